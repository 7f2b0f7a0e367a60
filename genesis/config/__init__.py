"""Pydantic configuration models (extra="forbid"), one file per concern."""

from genesis.config.cameras import CameraConfig, LineConfig, ZoneConfig
from genesis.config.distributed import DistributedConfig
from genesis.config.inference import DetectorConfig, EmbedderConfig, FaceDetectorConfig, ModelsConfig, RecognitionConfig
from genesis.config.pipeline import AnalyticsConfig, PipelineConfig, RetentionConfig, TrackerConfig
from genesis.config.settings import ConfigError, Settings, default_settings, load_settings

__all__ = [
    "AnalyticsConfig",
    "CameraConfig",
    "ConfigError",
    "DetectorConfig",
    "DistributedConfig",
    "EmbedderConfig",
    "FaceDetectorConfig",
    "LineConfig",
    "ModelsConfig",
    "PipelineConfig",
    "RecognitionConfig",
    "RetentionConfig",
    "Settings",
    "TrackerConfig",
    "ZoneConfig",
    "default_settings",
    "load_settings",
]
