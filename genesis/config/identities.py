"""Enrollment quality gate, unknown-face clustering and biometric-data protection settings."""

from __future__ import annotations

from pydantic import Field, model_validator

from genesis.config._base import StrictModel


class EnrollQualityConfig(StrictModel):
    """What an enrollment photo must pass. A value under ``warn_*`` is reported; under ``min_*``
    the photo is rejected (and, enrollment being all or nothing, nothing is stored)."""

    min_face_px: int = Field(default=64, ge=8, description="Reject a face whose box side is shorter (px).")
    warn_face_px: int = Field(default=96, ge=8, description="Warn about a face whose box side is shorter (px).")
    min_sharpness: float = Field(
        default=30.0, ge=0.0,
        description="Reject a face whose sharpness (variance of the Laplacian of the face, grey, 112 x 112) "
        "is lower (a blurred face).",
    )
    warn_sharpness: float = Field(default=100.0, ge=0.0, description="Warn about a face less sharp than this.")
    ambiguous_face_ratio: float = Field(
        default=0.5, gt=0.0, le=1.0,
        description="Reject a photo whose second-largest face has at least this share of the largest face's "
        "area: it is not clear who is being enrolled.",
    )

    @model_validator(mode="after")
    def _warn_above_min(self) -> EnrollQualityConfig:
        if self.warn_face_px < self.min_face_px:
            raise ValueError("warn_face_px must be at least min_face_px")
        if self.warn_sharpness < self.min_sharpness:
            raise ValueError("warn_sharpness must be at least min_sharpness")
        return self


class IdentitiesConfig(StrictModel):
    quality: EnrollQualityConfig = EnrollQualityConfig()
    keep_crops: bool = Field(
        default=True,
        description="Keep each enrolled face (a loose crop, encrypted) so `genesis identities re-embed` can "
        "recompute the embeddings after a model change without the original photos.",
    )
    gallery_check_s: float = Field(
        default=1.0, ge=0.0,
        description="A worker looks at the gallery version at most this often (seconds) to refresh its cache.",
    )
    negative_margin: float | None = Field(
        default=None, gt=0.0, lt=2.0,
        description="A face within this cosine distance of a face rejected for an identity ('not this "
        "person') is never matched to it (default: half the model's threshold).",
    )
    cluster_threshold: float | None = Field(
        default=None, gt=0.0, lt=2.0,
        description="Unknown faces join the nearest unknown cluster within this cosine distance of its "
        "centroid, else start a new one (default: the model's recognition threshold).",
    )
    unknowns_without_gallery: bool = Field(
        default=False,
        description="Look for faces (and cluster the unknown ones) even while nobody is enrolled; off by default "
        "because it costs face searches on every track.",
    )
    actor: str | None = Field(
        default=None, description="Who the audit log names for CLI actions (default: $USER)."
    )
