"""Pydantic configuration models (extra="forbid"), one file per concern."""

from genesis.config.cameras import CameraConfig, LineConfig, ZoneConfig
from genesis.config.models import DetectorConfig, EmbedderConfig, FaceDetectorConfig, ModelsConfig, RecognitionConfig
from genesis.config.pipeline import AnalyticsConfig, PipelineConfig, RetentionConfig, TrackerConfig
from genesis.config.settings import ConfigError, Settings, load_settings

__all__ = [
    "AnalyticsConfig",
    "CameraConfig",
    "ConfigError",
    "DetectorConfig",
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
    "load_settings",
]
