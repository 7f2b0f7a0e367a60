"""Adapters to the outside world: frame stores, the database, video sources."""
