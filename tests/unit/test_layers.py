"""The import graph of ``genesis``: no circle, and no import from a lower layer up to a higher one.

The imports are read with ``ast`` (nothing is imported), every one of them: at module level, inside
functions (a lazy import is still a dependency) and under ``TYPE_CHECKING`` (a type is a dependency
too, so those count for the layers; they never run, so they do not count for circles).

Each module belongs to the unit with the longest prefix of its name in ``LAYERS``. A module may
import its own unit and any unit of a lower layer; units of the same layer are peers and never
import each other (stages and adapters know nothing of one another; the database adapter and
the detector backends neither).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "genesis"

LAYERS: list[dict[str, tuple[str, ...]]] = [
    # dataclasses, the codec, the Redis key scheme is NOT here (it is an adapter); the version
    {"domain": ("genesis.domain", "genesis.__init__")},
    # pydantic settings
    {"config": ("genesis.config",)},
    # the outside world: models (backends); databases, Redis, video, the broker (adapters)
    {"backends": ("genesis.backends",), "adapters": ("genesis.adapters",)},
    # pure per-frame stages; the message contract of the distributed mode (task names, queues,
    # how a message is sent, the Celery app's configuration); metric definitions
    {
        "stages": ("genesis.stages",),
        "messages": ("genesis.tasks.routing", "genesis.tasks.dispatch", "genesis.tasks.schedule",
                     "genesis.tasks.celery_config"),
        "metrics": ("genesis.ops.metrics", "genesis.ops.timing"),
    },
    # enrolled identities, the gallery cache, track faces
    {"identities": ("genesis.identities",)},
    # alert delivery, rollups, heatmaps, enrollment
    {"services": ("genesis.services",)},
    # the run loop and its runners (embedded, capture, sequencer), the report
    {"pipeline": ("genesis.pipeline",)},
    # the evaluation harness (it runs the real pipeline on labelled data)
    {"eval": ("genesis.eval",)},
    # the worker runtime: base task class and dead letters, the ops endpoint, the Celery app
    {"worker runtime": ("genesis.tasks.base", "genesis.tasks.heartbeat", "genesis.ops", "genesis.celery")},
    # the Celery tasks (thin: they drive the pipeline)
    {"tasks": ("genesis.tasks",)},
    # the entry points
    {"entry points": ("genesis.api", "genesis.cli", "genesis.ops.capture", "genesis.ops.launch")},
    # benchmarks: nothing in the product imports them
    {"bench": ("genesis.bench",)},
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (never executed)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
                (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
                or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")):
            for child in node.body:
                out.update(id(n) for n in ast.walk(child))
    return out


def _imports(name: str, path: Path, modules: dict[str, Path], runtime_only: bool = False) -> set[str]:
    """The genesis modules ``name`` imports (``from pkg import mod`` is an import of ``pkg.mod``);
    with ``runtime_only``, not those under ``if TYPE_CHECKING``."""
    out: set[str] = set()
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_nodes(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                keep = len(base) - node.level + (1 if is_package else 0)
                target = ".".join(base[:keep] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in modules else target)
    return {m for m in out if m in modules and m != name}


def _graph(runtime_only: bool = False) -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules, runtime_only) for name, path in modules.items()}


def _unit(module: str) -> tuple[int, str]:
    """(layer, unit) of a module: the unit of its longest prefix in LAYERS."""
    if module == "genesis":
        module = "genesis.__init__"
    best: tuple[int, str, str] | None = None
    for rank, units in enumerate(LAYERS):
        for unit, prefixes in units.items():
            for prefix in prefixes:
                if (module == prefix or module.startswith(prefix + ".")) and (
                        best is None or len(prefix) > len(best[2])):
                    best = (rank, unit, prefix)
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS"
    return best[0], best[1]


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        _unit(module)


STAGES_MAY_IMPORT = ("genesis.domain", "genesis.config", "genesis.backends", "genesis.stages")
"""Stages are pure: they see the domain types, their settings and the model interfaces, never
an adapter (database, Redis) nor the message contract."""


def _violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in sorted(graph.items()):
        rank, unit = _unit(module)
        for target in sorted(targets):
            trank, tunit = _unit(target)
            if unit == "stages" and not target.startswith(STAGES_MAY_IMPORT):
                bad.append(f"{module} (a stage) imports {target}")
            elif tunit != unit and trank >= rank:
                how = "a peer" if trank == rank else "a higher layer"
                bad.append(f"{module} ({unit}) imports {target} ({tunit}, {how})")
    return bad


def test_no_import_goes_up_or_sideways() -> None:
    bad = _violations(_graph())
    assert not bad, "\n".join(bad)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph``, or None."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in colour:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = 2
        return None

    for start in sorted(graph):
        if start not in colour:
            found = visit(start)
            if found:
                return found
    return None


def test_no_import_circle() -> None:
    circle = _cycle(_graph(runtime_only=True))
    assert circle is None, "import circle: " + " -> ".join(circle or [])


@pytest.mark.parametrize(
    ("graph", "circle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"a2"}, "a2": set(), "b": {"b"}}, ["b", "b"]),
    ],
)
def test_the_circle_finder_finds_circles(graph: dict[str, set[str]], circle: list[str] | None) -> None:
    assert _cycle(graph) == circle


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("genesis.tasks.sequence", "genesis.pipeline.sequencer", True),
        ("genesis.pipeline.capture", "genesis.tasks.routing", True),
        ("genesis.stages.camera", "genesis.domain", True),
        ("genesis.stages.camera", "genesis.adapters.db.repository", False),
        ("genesis.adapters.db.alerts", "genesis.stages.alerts", False),
        ("genesis.adapters.dlq", "genesis.tasks.routing", False),
        ("genesis.pipeline.capture", "genesis.celery", False),
        ("genesis.backends.faces", "genesis.adapters.video", False),
        ("genesis.api.app", "genesis.bench.pipeline", False),
    ],
)
def test_the_layer_rule(importer: str, imported: str, allowed: bool) -> None:
    assert (_violations({importer: {imported}}) == []) is allowed


SQL_OUTSIDE_ADAPTERS: dict[str, str] = {}
"""Modules outside ``genesis.adapters`` that still import SQLAlchemy, with why. Keep it short."""


def _imports_sqlalchemy(path: Path) -> bool:
    """Whether the module imports ``sqlalchemy`` (any submodule, at any depth, even lazily)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        if any(n == "sqlalchemy" or n.startswith("sqlalchemy.") for n in names):
            return True
    return False


def test_queries_live_in_the_database_adapter() -> None:
    """SQL (and SQLAlchemy, its engine, sessions and errors) stays in ``genesis.adapters``: the
    identities library, the API's services and the CLI call typed functions of the adapter."""
    found = {name for name, path in _modules().items()
             if not name.startswith("genesis.adapters.") and _imports_sqlalchemy(path)}
    assert found - set(SQL_OUTSIDE_ADAPTERS) == set(), sorted(found - set(SQL_OUTSIDE_ADAPTERS))
    assert set(SQL_OUTSIDE_ADAPTERS) - found == set(), "stale entries in SQL_OUTSIDE_ADAPTERS"


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from sqlalchemy import select", True),
        ("import sqlalchemy.exc", True),
        ("def f():\n    from sqlalchemy.exc import OperationalError", True),
        ("from genesis.adapters.db import DatabaseError", False),
        ("import sqlalchemy_utils", False),
        ("from .sqlalchemy import x", False),
    ],
)
def test_the_sqlalchemy_finder(tmp_path: Path, source: str, found: bool) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    assert _imports_sqlalchemy(path) is found
