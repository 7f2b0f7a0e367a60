"""Which models the pipeline runs, and where their weight files live."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from genesis.config._base import StrictModel

EmbedderName = Literal["SFace", "Dlib", "ArcFace", "Facenet512"]

DEFAULT_EMBEDDER_WEIGHTS: dict[str, str] = {
    "SFace": "face_recognition_sface_2021dec_int8bq_ort.onnx",
    "Dlib": "dlib_face_recognition_resnet_model_v1.dat",
    "ArcFace": "arcface_weights.onnx",
    "Facenet512": "facenet512_weights.onnx",
}

# deepface's verification thresholds for cosine distance (deepface.modules.verification).
DEFAULT_COSINE_THRESHOLDS: dict[str, float] = {
    "SFace": 0.593,
    "Dlib": 0.07,
    "ArcFace": 0.68,
    "Facenet512": 0.30,
}


# The best identity must beat the second-best by this much (in the model's own distance units:
# Dlib's cosine distances are about ten times smaller than SFace's).
DEFAULT_MARGINS: dict[str, float] = {
    "SFace": 0.05,
    "Dlib": 0.005,
    "ArcFace": 0.05,
    "Facenet512": 0.03,
}


class ModelsConfig(StrictModel):
    dir: Path = Field(
        default=Path("~/.genesis/models"),
        description="Folder holding the weight files (GENESIS_MODELS_DIR overrides it).",
    )

    @property
    def path(self) -> Path:
        return self.dir.expanduser()


class DetectorConfig(StrictModel):
    backend: Literal["onnx", "ultralytics"] = Field(
        default="onnx",
        description="onnx: plain onnxruntime (CPU default); ultralytics: YOLO(path) on torch.",
    )
    weights: str = Field(
        default="yolov8n_int8.onnx",
        description="A file name in the models folder, or a path to a YOLOv8/YOLO11 export.",
    )
    input_size: int = Field(default=640, ge=32, le=4096, description="Square network input (px).")
    confidence: float = Field(
        default=0.25, gt=0.0, lt=1.0, description="Lowest person score kept (the tracker uses low scores too)."
    )
    iou: float = Field(default=0.45, gt=0.0, le=1.0, description="NMS IoU threshold.")
    classes: list[int] = Field(default=[0], description="COCO class ids kept (0 = person).")
    device: str = Field(default="cpu", description="cpu, or cuda:N for the ultralytics backend.")
    threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads (0 = its default).")


class FaceDetectorConfig(StrictModel):
    backend: Literal["yunet"] = "yunet"
    weights: str = "face_detection_yunet_2023mar_int8bq.onnx"
    score_threshold: float = Field(default=0.8, gt=0.0, lt=1.0)
    nms_threshold: float = Field(default=0.3, gt=0.0, le=1.0)
    min_face_px: int = Field(
        default=32, ge=8, description="Faces smaller than this (box side, px) are ignored: too small to embed well."
    )


class EmbedderConfig(StrictModel):
    model: EmbedderName = "SFace"
    weights: str | None = Field(default=None, description="Weight file; default depends on the model.")
    threshold: float | None = Field(
        default=None, gt=0.0, lt=2.0, description="Cosine distance threshold; default is deepface's for the model."
    )

    @property
    def weights_name(self) -> str:
        return self.weights or DEFAULT_EMBEDDER_WEIGHTS[self.model]

    @property
    def cosine_threshold(self) -> float:
        return self.threshold if self.threshold is not None else DEFAULT_COSINE_THRESHOLDS[self.model]


class SegmentsConfig(StrictModel):
    """Identity segments: a name belongs to a stretch of a track, re-verified, cut when the track
    stops being the same person (docs/recognition.md)."""

    enabled: bool = Field(
        default=True,
        description="false = the old per-track policy: a named track keeps its name for good, whoever the "
        "tracker attaches to it (kept for comparison in `genesis eval video`).",
    )
    verify_every_s: float = Field(
        default=2.0, gt=0.0,
        description="A named (or confidently unknown) segment gets one face check per this many seconds of "
        "track time while it shows a face.",
    )
    verify_max: int = Field(
        default=8, ge=0, description="At most this many re-verification face searches per segment (0 = never)."
    )
    other_identity_faces: int = Field(
        default=1, ge=1,
        description="Clear faces in a row matching another identity that end a named segment.",
    )
    far_faces: int = Field(
        default=2, ge=1,
        description="Clear faces in a row far from the segment's name (matching nobody) that end it.",
    )
    far_factor: float = Field(
        default=1.15, ge=1.0,
        description="'Far from the name' = a cosine distance above the model's threshold times this factor.",
    )
    clear_face_px: int = Field(
        default=40, ge=8,
        description="A face smaller than this (box side, px) cannot disagree with a name (too small to trust).",
    )
    clear_face_score: float = Field(
        default=0.85, gt=0.0, le=1.0, description="A face detected with a lower YuNet score cannot disagree."
    )
    clear_sharpness: float = Field(
        default=30.0, ge=0.0,
        description="A face less sharp than this (variance of the Laplacian, grey, 112 x 112) cannot disagree.",
    )
    cut_gap_s: float = Field(
        default=0.5, ge=0.0,
        description="A track re-attached after this long between two of its sightings starts a new segment (the "
        "tracker keeps lost tracks for a while and gives them to whoever appears there; 0 = off).",
    )
    cut_size_ratio: float = Field(
        default=0.0, ge=0.0,
        description="A box whose height changes by more than this factor from one sighting to the next starts "
        "a new segment (0 = off: on the shared crowd video partial occlusions trip it every few frames, and "
        "`genesis eval video` shows no gain; see docs/recognition.md).",
    )
    cut_appearance: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="A track whose torso colours (hue-saturation histogram, Bhattacharyya distance to the "
        "segment's running reference) change by more than this while it overlaps nobody starts a new segment "
        "(0 = off; on, the ordered stage needs every frame's pixels).",
    )
    overlap_iou: float = Field(
        default=0.1, gt=0.0, le=1.0,
        description="A box overlapping another person's this much may swap identity with it: the frames of "
        "the overlap are re-checked by face once it ends.",
    )


class RecognitionConfig(StrictModel):
    enabled: bool = True
    face_detector: FaceDetectorConfig = FaceDetectorConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    every_n_frames: int = Field(default=3, ge=1, description="At most one attempt per track every N processed frames.")
    max_attempts: int = Field(default=6, ge=1, description="At most K face attempts per track.")
    min_votes: int = Field(default=2, ge=1, description="Votes an identity needs to be given to a track.")
    unknown_votes_to_stop: int = Field(
        default=3, ge=0,
        description="Stop looking at a track after this many faces matched nobody and none matched anyone "
        "(a stranger; 0 = use all max_attempts).",
    )
    margin: float | None = Field(
        default=None, ge=0.0, lt=1.0,
        description="The best identity must beat the second-best one by this cosine distance "
        "(default per model: SFace 0.05, Dlib 0.005, ArcFace 0.05, Facenet512 0.03).",
    )
    upper_fraction: float = Field(
        default=0.5, gt=0.1, le=1.0, description="Part of the person box (from the top) searched for a face."
    )
    min_person_height_px: int = Field(
        default=48, ge=0, description="Person boxes shorter than this are too small for a face and are skipped."
    )
    segments: SegmentsConfig = SegmentsConfig()

    @property
    def match_margin(self) -> float:
        return self.margin if self.margin is not None else DEFAULT_MARGINS[self.embedder.model]

    @model_validator(mode="after")
    def _votes_fit_attempts(self) -> RecognitionConfig:
        if self.min_votes > self.max_attempts:
            raise ValueError(f"min_votes ({self.min_votes}) cannot exceed max_attempts ({self.max_attempts})")
        return self
