"""Shared fixtures: the real models and data beside the project in ../shared (never copied in)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from genesis.backends.weights import CATALOG, pull
from genesis.config import Settings, load_settings
from tests import harness

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GENESIS_SHARED_DIR", ROOT.parent / "shared")).resolve()
DEFAULT_WEIGHTS = (
    "yolov8n_int8.onnx",
    "bytetrack_nano.onnx",
    "face_detection_yunet_2023mar_int8bq.onnx",
    "face_recognition_sface_2021dec_int8bq_ort.onnx",
    "dlib_face_recognition_resnet_model_v1.dat",
)


def pytest_configure(config: pytest.Config) -> None:
    harness.configure(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    harness.unconfigure()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--quick", action="store_true",
                     help=f"only the tests that took at most {harness.QUICK_MAX_S:g} s in tests/durations.json "
                          "(no compose): the inner loop's tier")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--quick"):
        harness.quick(items, config)
    harness.order(items, config)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    if config.getvalue("dist") == "loadgroup":
        return harness.scheduler(config, log)
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    with harness.timed(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    harness.record_outcome(item, outcome.get_result())  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "models").is_dir():
        pytest.fail(f"the shared models and data folder is missing: {SHARED} (set GENESIS_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    return shared_dir / "data"


@pytest.fixture(scope="session")
def models_dir(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder provisioned by `genesis models pull --from ../shared/models` (no network)."""
    target = tmp_path_factory.mktemp("models")
    results = pull([CATALOG[n] for n in DEFAULT_WEIGHTS], target, [shared_dir / "models"], use_pypi=False,
                   use_network=False)
    failed = [r for r in results if r.error]
    assert not failed, failed
    return target


@pytest.fixture()
def settings(models_dir: Path, tmp_path: Path) -> Settings:
    """Default settings on the test models, with a fresh SQLite database."""
    return load_settings(
        environ={"GENESIS_MODELS_DIR": str(models_dir), "GENESIS_DATABASE_URL": f"sqlite:///{tmp_path / 'genesis.db'}"}
    )
