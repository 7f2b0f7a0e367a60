"""Beat's storage work for an embedded run, which has no beat: the retention purge and the storage upkeep.

The distributed mode's beat sends, every ``rollups.purge_every_s`` and ``rollups.storage_every_s`` seconds, the
retention purge (`genesis.services.rollups.purge`: rows past their retention, unknown faces past
``retention.unknown_faces_days``) and the storage upkeep (`genesis.services.rollups.storage_upkeep`: PostgreSQL day
partitions ahead, heatmap rows of ended hours merged into one row per run and hour). An embedded run of a live
camera can last weeks: without the same work its database kept every row forever and every per-batch heat row (a
busy camera-day's heatmap read 20 k rows instead of 24). :class:`Upkeep` does both when the run starts (as beat
does when it starts) and again at the same intervals while it runs, on the run's own thread and database; nothing
when ``rollups.enabled`` is off (beat sends nothing then either).

A failed upkeep (the database busy or away) is logged and tried again at the next interval: it never ends a run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from genesis.adapters.db import Repository
from genesis.config import Settings
from genesis.services.rollups import purge, storage_upkeep

log = logging.getLogger(__name__)


@dataclass
class Upkeep:
    repo: Repository
    settings: Settings
    clock: Callable[[], float] = time.monotonic
    purged: dict[str, int] = field(default_factory=dict)
    """Rows (points, faces ...) the purges of this run removed, per table."""
    heat_rows_merged: int = 0
    partitions_created: int = 0
    packed: dict[str, int] = field(default_factory=dict)
    """Packs written and the rows they took, per table."""
    failures: int = 0
    _due: dict[str, float] = field(default_factory=dict)

    def tick(self) -> None:
        """Run what is due (both at the first call)."""
        cfg = self.settings.rollups
        if not cfg.enabled:
            return
        now = self.clock()
        # The purge first: the upkeep does not merge the heat rows of hours it is about to delete.
        for name, every, work in (("purge", cfg.purge_every_s, self._purge),
                                  ("storage", cfg.storage_every_s, self._storage)):
            if now < self._due.get(name, now):
                continue
            self._due[name] = now + every
            try:
                work()
            except Exception as exc:  # the run goes on; the next interval tries again
                self.failures += 1
                log.warning("embedded %s upkeep failed (tried again in %.0f s): %s", name, every,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def _storage(self) -> None:
        done = storage_upkeep(self.repo, self.settings)
        self.heat_rows_merged += int(done["heat_rows_merged"])
        self.partitions_created += len(done["partitions_created"])
        for table, n in done["passages_packed"].items():
            if n:
                self.packed[table] = self.packed.get(table, 0) + int(n)

    def _purge(self) -> None:
        for table, n in purge(self.repo, self.settings).items():
            if n:
                self.purged[table] = self.purged.get(table, 0) + int(n)

    def summary(self) -> dict[str, Any]:
        """What ``report.json`` says of it (``run.upkeep``)."""
        return {"purged": dict(sorted(self.purged.items())), "heat_rows_merged": self.heat_rows_merged,
                "partitions_created": self.partitions_created, "passages_packed": dict(sorted(self.packed.items())),
                "failures": self.failures}
