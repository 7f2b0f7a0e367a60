"""The root settings object: YAML file + GENESIS_* environment overrides, validated at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from genesis.config._base import StrictModel
from genesis.config.alerts import AlertsConfig
from genesis.config.api import ApiConfig
from genesis.config.cameras import CameraConfig, check_camera_id
from genesis.config.console import ConsoleConfig
from genesis.config.distributed import DistributedConfig
from genesis.config.identities import IdentitiesConfig
from genesis.config.inference import (
    DETECTOR_TYPES,
    AnyDetectorConfig,
    ModelsConfig,
    RecognitionConfig,
    YoloDetectorConfig,
)
from genesis.config.mqtt import MqttConfig
from genesis.config.ops import OpsConfig
from genesis.config.pipeline import AnalyticsConfig, PipelineConfig, RetentionConfig, TrackerConfig
from genesis.config.privacy import PrivacyConfig
from genesis.config.rollups import RollupsConfig

ENV_PREFIX = "GENESIS_"
# Shortcuts documented in the README; any other GENESIS_A__B=value sets the field a.b.
ENV_SHORTCUTS: dict[str, tuple[str, ...]] = {
    "GENESIS_DATABASE_URL": ("database_url",),
    "GENESIS_BROKER_URL": ("broker_url",),
    "GENESIS_REDIS_URL": ("redis_url",),
    "GENESIS_MODELS_DIR": ("models", "dir"),
}
# GENESIS_* variables that are not settings fields (and GENESIS_TEST_*, the test suite's own).
# Fields whose environment value is taken as it is written (secrets).
TEXT_FIELDS = {"password", "secret"}
ENV_IGNORED = {"GENESIS_CONFIG", "GENESIS_SHARED_DIR", "GENESIS_EMBEDDING_KEY"}


class ConfigError(Exception):
    """The configuration is invalid; the message names the field path."""


class Settings(StrictModel):
    database_url: str = Field(default="sqlite:///genesis.db", description="SQLAlchemy URL.")
    broker_url: str = Field(default="redis://127.0.0.1:6379/0", description="Celery broker URL.")
    redis_url: str = Field(default="redis://127.0.0.1:6379/1", description="Frame store and sequencer.")
    models: ModelsConfig = ModelsConfig()
    detector: AnyDetectorConfig = Field(
        default_factory=YoloDetectorConfig, description="Person detector: a family (type), or a preset."
    )
    tracker: TrackerConfig = TrackerConfig()
    recognition: RecognitionConfig = RecognitionConfig()
    analytics: AnalyticsConfig = AnalyticsConfig()
    pipeline: PipelineConfig = PipelineConfig()
    retention: RetentionConfig = RetentionConfig()
    rollups: RollupsConfig = RollupsConfig()
    distributed: DistributedConfig = DistributedConfig()
    alerts: AlertsConfig = AlertsConfig()
    api: ApiConfig = ApiConfig()
    identities: IdentitiesConfig = IdentitiesConfig()
    ops: OpsConfig = OpsConfig()
    mqtt: MqttConfig = MqttConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    console: ConsoleConfig = ConsoleConfig()
    cameras: list[CameraConfig] = Field(default_factory=list)

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        ids = [c.id for c in cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate camera ids: {', '.join(dupes)}")
        return cameras

    def camera(self, camera_id: str | None, source: str | None = None) -> CameraConfig:
        """The configured camera with this id; a bare camera when it is not configured.

        Without an id: the camera whose ``source`` is this source, else the only camera. An id
        that breaks the camera-id rule (``check_camera_id``) is a one-line ConfigError.
        """
        if camera_id is None:
            if source is not None:
                for cam in self.cameras:
                    if cam.source is not None and _same_source(cam.source, source):
                        return cam
            if len(self.cameras) == 1:
                return self.cameras[0]
            return CameraConfig(id="cam0")
        try:
            check_camera_id(camera_id)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        return CameraConfig(id=camera_id)

    @property
    def site(self) -> str:
        """This site's id: ``distributed.site_id``, else the address of ``redis_url`` (see there)."""
        return self.distributed.site_id or redis_site(self.redis_url)

    def blur_mode(self, camera: CameraConfig) -> str:
        """Whose faces this camera's stored and shown images blur: unenrolled, everyone or off."""
        if camera.blur_faces is not None:
            return camera.blur_faces
        return "unenrolled" if self.privacy.blur_unenrolled_faces else "off"


def redis_site(url: str) -> str:
    """``host:port/db`` of a Redis URL, without scheme or credentials (a socket: ``path/db``)."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        return f"{parts.path}/{query.get('db', ['0'])[0]}"
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    db = parts.path.strip("/") or query.get("db", ["0"])[0]
    return f"{(parts.hostname or 'localhost').lower()}:{port}/{db}"


def _same_source(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def env_overrides(environ: Mapping[str, str]) -> list[tuple[str, tuple[str, ...], Any]]:
    """(variable, field path, value) of each GENESIS_* variable."""
    out: list[tuple[str, tuple[str, ...], Any]] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in ENV_IGNORED or name.startswith("GENESIS_TEST_"):
            continue  # GENESIS_TEST_*: the test suite's own variables (tests/services.py)
        raw = environ[name]
        path = ENV_SHORTCUTS.get(name) or tuple(p.lower() for p in name[len(ENV_PREFIX):].split("__"))
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if path[-1] in TEXT_FIELDS:
            value = raw  # a password such as "on" or "0123" is text, never YAML
        if isinstance(value, (int, float, bool)) is False and not isinstance(value, (list, dict)):
            value = raw
        out.append((name, path, value))
    return out


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``detector.yolo.confidence`` -> ``detector.confidence``: the family tag pydantic puts in the location of a
    discriminated union is not a key the user wrote."""
    parts = [str(p) for i, p in enumerate(loc) if not (i > 0 and loc[i - 1] == "detector" and p in DETECTOR_TYPES)]
    return ".".join(parts)


def format_validation_error(err: ValidationError, origin: str) -> str:
    parts = []
    for e in err.errors():
        loc = _field_path(tuple(e["loc"])) or "(root)"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return f"invalid configuration in {origin}: " + "; ".join(parts)


DEFAULT_CONFIG = Path("configs/settings.yaml")


def default_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings for a process started without --config: $GENESIS_CONFIG, else
    configs/settings.yaml in the working folder if it exists, else the defaults."""
    environ = os.environ if environ is None else environ
    if environ.get("GENESIS_CONFIG"):
        return load_settings(None, environ)
    return load_settings(DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None, environ)


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the YAML file (if any), apply GENESIS_* overrides and validate.

    Raises ConfigError with the path of each bad field; nothing is started on error.
    """
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is None and environ.get("GENESIS_CONFIG"):
        path = environ["GENESIS_CONFIG"]
    if path is not None:
        p = Path(path)
        origin = str(p)
        if not p.is_file():
            raise ConfigError(f"configuration file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"invalid YAML in {p}{where}: {getattr(exc, 'problem', exc)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"invalid configuration in {p}: the top level must be a mapping")
        data = loaded
    overrides = env_overrides(environ)
    for _, field_path, value in overrides:
        _set_path(data, field_path, value)
    if overrides:
        origin += " + " + ", ".join(name for name, _, _ in overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin)) from None
