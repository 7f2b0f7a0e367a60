"""Which models the pipeline runs, and where their weight files live."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, TypeAdapter, model_validator

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


class TilingConfig(StrictModel):
    """Sliced inference: overlapping tiles of a large frame, each run at the model's input size."""

    enabled: bool = Field(default=False, description="Detect on overlapping tiles (for frames much larger than the "
                          "model input, where distant people are only a few pixels tall at full-frame scale).")
    columns: int = Field(default=2, ge=1, le=8, description="Tiles across the frame.")
    rows: int = Field(default=2, ge=1, le=8, description="Tiles down the frame.")
    overlap: float = Field(default=0.15, ge=0.0, lt=0.5, description="Overlap of neighbouring tiles (share of a "
                           "tile side); a person narrower than the overlap is whole in at least one tile.")
    full_frame: bool = Field(default=True, description="Also run the whole frame, for people taller than a tile.")
    merge_ios: float = Field(default=0.6, gt=0.0, le=1.0, description="A box cut by an inner tile border is merged "
                             "into an overlapping box when the intersection covers this share of the smaller one.")


class MotionConfig(StrictModel):
    """Motion gating: run the detector only when the picture changed since the last detection."""

    enabled: bool = Field(default=True, description="Skip detection on frames where nothing moved; their tracks "
                          "keep the last detections (a camera can opt out: motion: {enabled: false}).")
    width: int = Field(default=160, ge=32, le=640, description="Width of the small grey image compared (px).")
    pixel_threshold: int = Field(default=18, ge=1, le=255, description="Grey-level change that counts a pixel as "
                                 "changed (after a light blur); higher = less sensitive to noise and light.")
    min_changed: float = Field(default=0.0015, gt=0.0, lt=1.0, description="Share of the small image that must "
                               "change for the frame to count as moving (sensitivity; 0.0015 of 160x90 = 22 px).")
    force_every_s: float = Field(default=2.0, gt=0.0, le=60.0, description="A full detection at least this often "
                                 "(seconds of video), so that a person who stands still is re-detected.")
    settle_frames: int = Field(
        default=3, ge=0, le=100,
        description="Once the picture stops changing, the still frame this many frames after the last moving one "
        "is detected (a second face attempt for someone who walked in and stopped: naming takes "
        "recognition.min_votes, at most one per every_n_frames), and the first still frame too when the movement "
        "was a single detected frame (it confirms them as a track: two detections in a row); 0 = neither "
        "(still frames wait for the forced detection).",
    )
    window_s: float = Field(
        default=0.15, ge=0.0, le=5.0,
        description="Movement is also judged against the newest frame at least this many seconds older, when that "
        "frame is older than the last detected one: at a high frame rate a walker changes too few pixels from one "
        "frame to the next, and every other frame of a walk was held. At 5 fps or less (and with 0) only the last "
        "detected frame is compared (the previous frame is never older than it).",
    )
    regions: bool = Field(default=False, description="Region detection: when everything that moved fits in one "
                          "window of the detector's input size, detect that window at full resolution instead of the "
                          "whole frame (people elsewhere keep their held boxes); see docs/detection.md.")
    regions_max_share: float = Field(default=0.6, gt=0.0, le=1.0, description="A window larger than this share of "
                                     "the frame is not worth it: the whole frame is detected.")


PresetName = Literal["crowd", "overhead", "doorway"]


class _DetectorBase(StrictModel):
    preset: PresetName | None = Field(
        default=None,
        description="crowd | overhead | doorway: fills the fields not given (docs/detection.md); None = as given.",
    )
    confidence: float = Field(
        default=0.25, gt=0.0, lt=1.0, description="Lowest person score kept (the tracker uses low scores too)."
    )
    iou: float = Field(default=0.45, gt=0.0, le=1.0, description="NMS IoU threshold.")
    min_height_px: float = Field(
        default=0.0, ge=0.0, description="Person prior: boxes shorter than this (frame pixels) are dropped; 0 = off."
    )
    max_aspect: float = Field(
        default=0.0, ge=0.0, description="Person prior: boxes wider than this times their height are dropped (a "
        "standing or walking person is taller than wide); 0 = off.",
    )
    classes: list[int] = Field(default=[0], description="Class ids kept (COCO: 0 = person; 1-class models: 0).")
    device: str = Field(default="cpu", description="cpu, or cuda:N for the ultralytics backend.")
    threads: int = Field(
        default=0, ge=0, description="onnxruntime intra-op threads (0 = automatic: in a prefork detect worker the "
        "CPUs divided among its children, elsewhere onnxruntime's default of one per core).",
    )
    tiling: TilingConfig = Field(default_factory=TilingConfig, description="Default for cameras without their own.")
    motion: MotionConfig = Field(default_factory=MotionConfig, description="Default for cameras without their own.")


class YoloDetectorConfig(_DetectorBase):
    """The YOLOv8/YOLO11 layout: one head row per anchor, cx, cy, w, h + class scores, letterbox input."""

    type: Literal["yolo"] = Field(default="yolo", description="yolo: YOLOv8/YOLO11 exports; yolox: YOLOX layout.")
    backend: Literal["onnx", "ultralytics"] = Field(
        default="onnx",
        description="onnx: plain onnxruntime (CPU default); ultralytics: YOLO(path) on torch.",
    )
    weights: str = Field(
        default="yolov8n_int8.onnx",
        description="A file name in the models folder, or a path to a YOLOv8/YOLO11 export.",
    )
    input_size: int = Field(default=640, ge=32, le=4096, description="Square network input (px); a fixed-size "
                            "export uses its own size.")
    half: bool = Field(default=False, description="ultralytics backend on a CUDA device: FP16 inference (ultralytics' "
                       "own half precision; ignored on the CPU). Boxes can differ slightly from FP32.")
    dequantize: bool = Field(default=True, description="onnx backend: run an export's dynamically quantized int8 "
                             "convolutions (yolov8n_int8.onnx) with their weights in float32 (30 % less CPU per frame "
                             "here: onnxruntime's int8 convolutions are slower than its float ones; the same people "
                             "found on MOT17, docs/detection.md); other exports run as they are. false: as exported.")


class YoloxDetectorConfig(_DetectorBase):
    """The YOLOX layout (ByteTrack's detectors): raw per-anchor rows dx, dy, log w, log h, objectness, class
    scores over a grid of strides; decoded and NMS'd here."""

    type: Literal["yolox"] = Field(description="yolox: YOLOX layout (ByteTrack's pedestrian models).")
    backend: Literal["onnx"] = Field(default="onnx", description="onnxruntime (the only backend for this layout).")
    weights: str = Field(default="bytetrack_nano.onnx", description="A file name in the models folder, or a path.")
    input_size: tuple[int, int] | None = Field(
        default=None, description="Network input height, width (px; multiples of the largest stride); None = the "
        "shape the model was exported with. An export fixed at another size runs at this one (docs/detection.md)."
    )
    strides: list[int] = Field(default=[8, 16, 32], min_length=1, description="Strides of the output levels.")
    preprocess: Literal["bytetrack", "yolox"] = Field(
        default="bytetrack",
        description="bytetrack: RGB /255 with ImageNet mean/std (ByteTrack's exports); yolox: BGR 0..255 as is "
        "(YOLOX >= 0.2 exports). Both resize keeping the aspect at the top-left of a 114-grey canvas.",
    )

    @model_validator(mode="after")
    def _check_input(self) -> YoloxDetectorConfig:
        if self.input_size is not None:
            h, w = self.input_size
            if min(h, w) < 32 or max(h, w) > 4096 or any(v % max(self.strides) for v in (h, w)):
                raise ValueError(f"input_size {self.input_size} must be 32..4096 and a multiple of the largest stride")
        return self


DetectorConfig = YoloDetectorConfig
"""The default family (kept under its old name: ``DetectorConfig(backend=..., weights=...)``)."""

# What each preset fills in (fields given next to ``preset`` win). Measured in docs/detection.md.
DETECTOR_PRESETS: dict[str, dict[str, Any]] = {
    # Pedestrians in a crowd, street or square view: ByteTrack's YOLOX-Nano (MOT17 + CrowdHuman), run at 480 x 864
    # instead of its exported 608 x 1088 (0.63 x the pixels, 49 against 77 ms of CPU a frame here; a 1280 x 720
    # camera fills it): the same precision and recall of people at least half visible on MOT17, fewer of the
    # hidden ones (docs/detection.md, "Input size"). Calibrated leave-one-sequence-out at that size
    # (python -m genesis.eval.calibrate): 0.55 is the middle of the confidences (0.45..0.65) that keep precision
    # >= 0.90 at recall (visibility >= 0.5) >= 0.85 on every MOT17 sequence at NMS 0.45; no person box is wider
    # than 1.25 x its height (drops the feet of people beyond the top of the frame).
    "crowd": {"type": "yolox", "weights": "bytetrack_nano.onnx", "input_size": (480, 864), "confidence": 0.55,
              "iou": 0.45, "max_aspect": 1.25},
    # A camera looking down on people: small, foreshortened bodies, which the pedestrian model finds far more of
    # than COCO YOLOv8n; a lower threshold for their lower scores.
    "overhead": {"type": "yolox", "weights": "bytetrack_nano.onnx", "confidence": 0.3, "iou": 0.45},
    # Close-up doorway or counter: large, truncated people (COCO YOLOv8n boxes them better), a scene that is
    # empty most of the time (motion gating on).
    "doorway": {"type": "yolo", "backend": "onnx", "weights": "yolov8n_int8.onnx", "input_size": 640,
                "confidence": 0.25, "iou": 0.45, "classes": [0], "motion": {"enabled": True}},
}


def expand_detector(value: Any) -> Any:
    """Raw ``detector`` settings → with the preset's fields filled in and ``type`` defaulting to ``yolo``
    (configs written before the families existed have only ``backend``)."""
    if not isinstance(value, dict):
        return value
    data = dict(value)
    preset = data.get("preset")
    if preset is not None:
        if preset not in DETECTOR_PRESETS:
            raise ValueError(f"unknown detector preset {preset!r}: one of {', '.join(DETECTOR_PRESETS)}")
        family = DETECTOR_PRESETS[preset]["type"]
        if data.get("type", family) != family:
            raise ValueError(
                f"preset {preset} is a {family} detector but type says {data['type']}: remove type, backend, "
                "weights and input_size from the detector settings (or the preset)"
            )
        merged = dict(DETECTOR_PRESETS[preset])
        for key, given in data.items():  # sections (motion, tiling) merge field by field
            base = merged.get(key)
            merged[key] = {**base, **given} if isinstance(base, dict) and isinstance(given, dict) else given
        data = merged
    data.setdefault("type", "yolo")
    return data


DETECTOR_TYPES = frozenset({"yolo", "yolox"})
"""The ``type`` tags of the detector families (pydantic names them in validation error locations)."""

AnyDetectorConfig = Annotated[
    YoloDetectorConfig | YoloxDetectorConfig,
    Field(discriminator="type"),
    BeforeValidator(expand_detector),
]
"""``detector:`` in the settings: one family, chosen by ``type`` (default ``yolo``), each with its own fields."""


def detector_config(data: dict[str, Any]) -> YoloDetectorConfig | YoloxDetectorConfig:
    """A validated detector config from raw settings (preset and ``type`` default applied)."""
    return _DETECTOR_ADAPTER.validate_python(data)


_DETECTOR_ADAPTER: TypeAdapter[YoloDetectorConfig | YoloxDetectorConfig] = TypeAdapter(AnyDetectorConfig)


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
