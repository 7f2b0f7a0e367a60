"""Pydantic configuration models (extra="forbid"), one file per concern."""

from genesis.config.cameras import CameraConfig, LineConfig, ZoneConfig
from genesis.config.distributed import DistributedConfig
from genesis.config.inference import (
    AnyDetectorConfig,
    DetectorConfig,
    EmbedderConfig,
    FaceDetectorConfig,
    ModelsConfig,
    MotionConfig,
    RecognitionConfig,
    TilingConfig,
    YoloDetectorConfig,
    YoloxDetectorConfig,
)
from genesis.config.pipeline import AnalyticsConfig, PipelineConfig, RetentionConfig, TrackerConfig
from genesis.config.settings import ConfigError, Settings, default_settings, load_settings

__all__ = [
    "AnalyticsConfig",
    "AnyDetectorConfig",
    "CameraConfig",
    "ConfigError",
    "DetectorConfig",
    "DistributedConfig",
    "EmbedderConfig",
    "FaceDetectorConfig",
    "LineConfig",
    "ModelsConfig",
    "MotionConfig",
    "PipelineConfig",
    "RecognitionConfig",
    "RetentionConfig",
    "Settings",
    "TilingConfig",
    "TrackerConfig",
    "YoloDetectorConfig",
    "YoloxDetectorConfig",
    "ZoneConfig",
    "default_settings",
    "load_settings",
]
