"""Identities: enrollment, the gallery cache, negatives, unknown-face clusters, privacy."""
