"""``python -m genesis.bench storage``: bytes per camera-day that today's schema stores, on PostgreSQL and SQLite.

    python -m genesis.bench storage [--source VIDEO] [--fps 5] [--frames N] [--loops 10] [--backends postgresql,sqlite]
        [--encrypted] [--query-days N] [--query-day-frames 432000] [--query-repeats 5] [--json FILE]

1. **Rows.** The clip is read at ``--fps`` (stride = the clip's fps / fps) and goes once through the real stages
   (detector, ByteTrack, recognition per track — faces are searched and clustered even with nobody enrolled —,
   a zone and a line, alert rules), exactly as the embedded runner and the distributed sequencer drive them
   (:class:`~genesis.pipeline.loop.RunLoop`, batches of 25 frames); a recording sink keeps what each batch would
   store.
2. **Writes.** For each backend, a fresh database (PostgreSQL: created through ``--pg-admin`` and dropped
   afterwards; SQLite: a file in a scratch folder), migrated. One run of camera ``bench`` stands for a live
   camera: the recorded batches are written ``--loops`` times through the production writer —
   ``Repository.save_outcome`` per batch (what the ``store`` queue's ``save_outcome`` task and the embedded
   ``LocalSink`` call), ``AlertStore.save``, ``Repository.save_tracks``, ``save_track_faces`` at the end of each
   loop, ``finish_run`` — each loop with its frames, track ids, occupancy windows and times shifted (epoch
   times from 2026-01-05 00:00 UTC) so that the loops follow each other as camera-time. Embeddings and face
   crops are stored encrypted with ``--encrypted`` (a fresh key, as a site with ``GENESIS_EMBEDDING_KEY`` set),
   otherwise as the environment says.
3. **Bytes.** ``VACUUM ANALYZE``, then every table's bytes (table + TOAST + indexes:
   :func:`genesis.adapters.db.storage.storage_stats`) minus the same figure of the empty migrated database
   (measured the same way first): bytes per frame, and MB per camera-day = bytes per frame x fps x 86400.
4. **Queries** (``--query-days N``, PostgreSQL): the run is grown in SQL (copies of its rows, shifted) to one
   camera-day of ``--query-day-frames`` frames, then copied to N days (one run per day, as a camera restarted
   daily); p50/p95 of ``--query-repeats`` calls of: the run report (``build_results``, what ``genesis report``
   reads), an identity's timeline (the console's ``identity_summary``; every 10th track is given a name), a
   day's heatmap (``heat_grid`` + ``grid_image``, ``genesis heatmap``'s path; first with the day's heat rows as
   written, then merged per run and hour as beat's storage upkeep leaves them), and the API's first list
   pages (runs, tracks, sightings, alerts; 50 items; tracks and sightings also under a zone filter and under the
   name of one track in 10 and of a visitor) through the API's service functions. Last, the retention
   purge of the first camera-day (``AnalyticsStore.purge_before`` with every kind's cutoff at the day's end, what
   beat's daily purge runs once the day is old enough): its time and the rows it removed.
5. **Ages** (with ``--query-days``, unless ``--no-pack``): the other days past ``retention.pack_after_days``
   (their unnamed passages packed, timed; what a camera-day keeps until the 30-day retentions, and the
   sightings' zone filter of a packed run), then past the 30-day retentions (points, attempts and unknown faces
   purged, what is left to pack packed, timed; what a camera-day keeps from then on, the reads of a packed run,
   the retention of a packed camera-day); a year at the shipped retention from the three ages.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from genesis.adapters.db import Repository, packs
from genesis.adapters.db.alerts import AlertFilter, AlertStore
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.adapters.db.storage import (
    PASSAGE_TABLES,
    RunCopy,
    StorageStats,
    copy_run_rows,
    label_tracks,
    run_extent,
    set_run_span,
    storage_stats,
    vacuum_analyze,
)
from genesis.adapters.frame_store import decode_jpeg, encode_jpeg
from genesis.adapters.video import VideoSource
from genesis.bench.distributed import PG_ADMIN, bench_config, fresh_postgres_database, load_average
from genesis.config import Settings, load_settings
from genesis.domain import FrameOutcome, FrameRef, TrackRecord, ZoneEvent
from genesis.eval.table import markdown_table
from genesis.identities.cache import GalleryCache, LiveFaces
from genesis.identities.crypto import BiometricCipher
from genesis.identities.store import IdentityStore
from genesis.identities.tracks import TrackFaceRecord, camera_track_faces, cluster_threshold, save_track_faces
from genesis.identities.tracks import purge as purge_unknown_faces
from genesis.pipeline.loop import BaseSink, BatchRows, RunLoop, RunProgress, RunState
from genesis.pipeline.model_loader import load_models
from genesis.services.rollups import kept_days
from genesis.stages.camera import CameraState
from genesis.stages.detect import camera_tiling, detect_frame
from genesis.stages.recognize import TrackRecognizer

DEFAULT_SOURCE = "../shared/data/video/opencv4nodejs_people.mp4"
BACKENDS = ("postgresql", "sqlite")
SAVE_EVERY = 25
"""Frames per batch, as the embedded runner and the sequencer (genesis.pipeline.embedded.SAVE_EVERY)."""
EPOCH0 = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
CAMERA = "bench"
DAY_S = 86400
IDENTITY = "bench-person"
VISITORS = 50
"""People besides :data:`IDENTITY` named in the grown runs (a site with many enrolled people; one track in 1,000
each, a few hundred segments a busy day)."""


def visitor(k: int) -> str:
    return f"bench-visitor-{k:02d}"


# -- 1. the rows of one pass over the clip -------------------------------------------------------


class RecordingSink(BaseSink):
    """Keeps what a run's sink would store: each batch's rows, and at the end the tracks and track faces."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.batches: list[BatchRows] = []
        self.tracks: list[TrackRecord] = []
        self.faces: list[TrackFaceRecord] = []
        self.meta: dict[str, Any] = {}

    def on_batch(self, outcomes: Sequence[FrameOutcome], closing: Sequence[ZoneEvent]) -> None:
        self.batches.append(BatchRows.of(outcomes, closing))

    def on_tracks_retired(self, camera: CameraState, retired: TrackRecognizer) -> None:
        self.tracks += camera.track_records(retired)
        self.faces += camera_track_faces(self.settings, camera, retired)

    def on_finish(self, camera: CameraState, progress: RunProgress) -> None:
        self.on_tracks_retired(camera, camera.recognizer)  # the tracks still held
        self.meta = progress.run_meta()


@dataclass(slots=True)
class Recorded:
    sink: RecordingSink
    frames: int
    stride: int
    fps: float
    width: int
    height: int
    seconds: float

    @property
    def seq_span(self) -> int:
        """Source frames one pass covers (the seq shift between loops)."""
        return self.frames * self.stride

    @property
    def span_s(self) -> float:
        """Camera-time one pass stands for."""
        return self.seq_span / self.fps


def record(settings: Settings, source: str, fps: float, frames: int | None, workdir: Path,
           progress: Progress) -> Recorded:
    camera = settings.camera(CAMERA)
    models = load_models(settings)
    with VideoSource(source) as video, Repository(f"sqlite:///{workdir / 'gallery.db'}") as gallery_db:
        info = video.info
        stride = max(1, round(info.fps / fps))
        total = -(-(info.frame_count or 0) // stride) or None
        if frames is not None:
            total = min(total, frames) if total else frames
        live = None
        if models.face_detector is not None and models.embedder is not None:
            live = LiveFaces(models.face_detector, models.embedder, GalleryCache(gallery_db, settings))
        state = CameraState(settings, camera, info.width, info.height, info.fps, live.get() if live else None,
                            stride)
        sink = RecordingSink(settings)
        loop = RunLoop(RunState(state, RunProgress(stride=stride, fps=info.fps)), sink, SAVE_EVERY)
        tiling = camera_tiling(settings, camera)
        task = progress.add_task(f"detect + track + recognise ({stride=})", total=total)
        t0 = time.perf_counter()
        n = 0
        for raw in video.frames(stride=stride, max_frames=frames):
            image = decode_jpeg(encode_jpeg(raw.image, settings.pipeline.jpeg_quality))  # as a worker sees it
            ref = FrameRef(camera.id, raw.seq, raw.ts, f"bench:{raw.seq}", image.shape[1], image.shape[0])
            loop.feed(detect_frame(models.detector, ref, image, tiling, settings.detector.iou), image)
            n += 1
            progress.advance(task)
        loop.close()
        return Recorded(sink, n, stride, info.fps, info.width, info.height, time.perf_counter() - t0)


# -- 2. writing it through the production writer -------------------------------------------------


def _shift(items: Sequence[Any], off: float, seq: int, track: int, **extra: int) -> list[Any]:
    out = []
    for x in items:
        changes: dict[str, Any] = {}
        for name in ("ts", "first_ts", "last_ts", "named_ts"):
            v = getattr(x, name, None)
            if v is not None:
                changes[name] = v + off
        for name in ("seq", "first_seq", "last_seq"):
            if hasattr(x, name):
                changes[name] = getattr(x, name) + seq
        if hasattr(x, "track_id"):
            changes["track_id"] = x.track_id + track
        for name, v in extra.items():
            if hasattr(x, name):
                changes[name] = getattr(x, name) + v
        out.append(dataclasses.replace(x, **changes))
    return out


def write_loops(repo: Repository, settings: Settings, rec: Recorded, loops: int, run_id: str,
                progress: Progress, cipher: BiometricCipher | None = None) -> tuple[int, float]:
    """Write ``loops`` passes as one run (embeddings and face crops encrypted with ``cipher``'s key, or as
    ``GENESIS_EMBEDDING_KEY`` says); (frames written, seconds spent writing)."""
    sink = rec.sink
    alerts = AlertStore(repo.engine)
    store = IdentityStore(repo, cipher)
    threshold = cluster_threshold(settings)
    max_track = max([t.track_id for t in sink.tracks] + [0]) + 1
    max_window = max([s.window for b in sink.batches for s in b.samples] + [0]) + 1
    task = progress.add_task(f"write {repo.dialect}", total=loops)
    t0 = time.perf_counter()
    repo.start_run(run_id, CAMERA, "bench", {"width": rec.width, "height": rec.height, "fps": rec.fps})
    for i in range(loops):
        off, seq, track = EPOCH0 + i * rec.span_s, i * rec.seq_span, i * max_track
        for b in sink.batches:
            points = _shift(b.points, off, seq, track)
            sightings, attempts = _shift(b.sightings, off, seq, track), _shift(b.attempts, off, seq, track)
            events, crossings = _shift(b.zone_events, off, seq, track), _shift(b.crossings, off, seq, track)
            if sightings or attempts or events or crossings or points:
                repo.save_outcome(run_id, sightings, attempts, events, crossings, points,
                                  settings.analytics.heatmap_cell_px)
            if b.alerts or b.samples:
                samples = [dataclasses.replace(s, window=s.window + i * max_window, at=s.at + off)
                           for s in b.samples]
                alerts.save(run_id, _shift(b.alerts, off, seq, track), samples, EPOCH0)
        repo.save_tracks(run_id, _shift(sink.tracks, off, seq, track))
        save_track_faces(store, run_id, _shift(sink.faces, off, 0, track), threshold)
        progress.advance(task)
    frames = loops * rec.frames
    repo.finish_run(run_id, "finished", frames, {**sink.meta, "frames": frames, "bench_loops": loops})
    set_run_span(repo.engine, run_id, EPOCH0, EPOCH0 + loops * rec.span_s)  # live: the rows' times are in the run
    return frames, time.perf_counter() - t0


@dataclass(slots=True)
class BackendResult:
    backend: str
    method: str
    frames: int
    write_s: float
    empty: StorageStats
    full: StorageStats
    fps: float
    queries: dict[str, list[float]] = field(default_factory=dict)
    query_rows: dict[str, int] = field(default_factory=dict)
    retention_ms: float | None = None
    retention_rows: dict[str, int] = field(default_factory=dict)
    merged: StorageStats | None = None
    """The same rows written to another fresh database, then each ended hour's heat rows merged as beat's storage
    upkeep (and an embedded run's) leaves them (measured after VACUUM FULL of the heat rows: the pages the merge
    freed given back, as a running site's later rows reuse them)."""
    heat_rows_merged: int = 0
    year_gb: dict[str, float] = field(default_factory=dict)
    """GB a year of this camera keeps per table at the shipped retention (:func:`year_at_retention`)."""
    at_scale_mb: float | None = None
    """MB per camera-day of the grown days (``--query-days``): without the small tables' first pages."""
    packed: PackedDays | None = None
    """The grown days once their points, attempts and unknown faces are gone and their passages packed."""

    def table_bytes(self, name: str, stats: StorageStats | None = None) -> int:
        a, b = (stats or self.full).table(name), self.empty.table(name)
        return (a.bytes or 0) - (b.bytes or 0 if b else 0) if a else 0

    def data_bytes_of(self, stats: StorageStats) -> int:
        """The tables' bytes of ``stats`` less those of the empty schema."""
        return (stats.tables_bytes or 0) - (self.empty.tables_bytes or 0)

    def mb_a_day(self, data: float, frames: int) -> float:
        """``data`` bytes of ``frames`` frames as MB per camera-day at the bench's fps."""
        return data / frames * self.fps * DAY_S / 1e6 if frames else 0.0

    @property
    def merged_mb_per_camera_day(self) -> float | None:
        return None if self.merged is None else self.mb_a_day(self.data_bytes_of(self.merged), self.frames)

    @property
    def data_bytes(self) -> int:
        return self.data_bytes_of(self.full)

    @property
    def bytes_per_frame(self) -> float:
        return self.data_bytes / self.frames if self.frames else 0.0

    @property
    def mb_per_camera_day(self) -> float:
        return self.mb_a_day(self.data_bytes, self.frames)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "method": self.method, "frames": self.frames, "fps": self.fps,
            "write_s": round(self.write_s, 3), "empty_tables_bytes": self.empty.tables_bytes,
            "tables_bytes": self.full.tables_bytes, "data_bytes": self.data_bytes,
            "bytes_per_frame": round(self.bytes_per_frame, 1), "mb_per_camera_day": round(self.mb_per_camera_day, 2),
            "tables": {t.table: {"rows": t.rows, "bytes": self.table_bytes(t.table)}
                       for t in self.full.tables if t.rows},
            "queries_ms": {k: {"p50": round(pct(v, 50), 1), "p95": round(pct(v, 95), 1), "n": len(v)}
                           for k, v in self.queries.items()},
            "query_rows": self.query_rows,
            "retention_ms": None if self.retention_ms is None else round(self.retention_ms, 1),
            "retention_rows": self.retention_rows,
            "merged_mb_per_camera_day": None if self.merged_mb_per_camera_day is None
            else round(self.merged_mb_per_camera_day, 2),
            "merged_heatmap_bytes": self.table_bytes("heatmap_cells", self.merged) if self.merged else None,
            "heat_rows_merged": self.heat_rows_merged,
            "year_gb_at_retention": {k: round(v, 2) for k, v in self.year_gb.items()},
            "at_scale_mb_per_camera_day": None if self.at_scale_mb is None else round(self.at_scale_mb, 1),
            "packed": None if self.packed is None else self.packed.to_dict(),
        }


def one_pass_pack_bytes(rec: Recorded) -> float:
    """Bytes a segment takes packed (with its share of zone events and crossings: what ``passage_packs`` holds),
    from one pass of the clip packed on its own. The grown days are copies of that pass shifted in time, which
    zlib finds again within its window and packs to almost nothing; one pass has no repeats, so this is what a
    day of passages that never repeat would take (more: a pass is small, and zlib's and the header's fixed bytes
    count on 90 segments instead of 400,000)."""
    sink = rec.sink
    events = [e for b in sink.batches for e in b.zone_events]
    crossings = [c for b in sink.batches for c in b.crossings]
    segs = list({(t.track_id, t.segment): t for t in sink.tracks}.values())
    return len(packs.encode(packs.columns_of(segs, events, crossings))) / max(1, len(segs))


@dataclass(slots=True)
class PackedDays:
    """What the grown days cost as they age: ``pack_after_days`` on (1 by default), their unnamed passages packed
    (`AnalyticsStore.pack_passages`), the rest kept as written; past the 30-day retentions, their points,
    recognition attempts and unknown faces purged (and whatever was left to pack packed)."""

    pack_ms: float
    """Milliseconds the first packing took (the days' unnamed passages), for all the grown days."""
    packed: dict[str, int]
    mb_a_day: float
    """MB of a camera-day past the 30-day retentions (:func:`aged_day`: packs, named segments and their events,
    heat rows, alerts ...), the packs at their measured bytes."""
    tables_mb_a_day: dict[str, float]
    one_pass_mb_a_day: float
    """The same with the packs at the bytes one pass of the clip takes packed (:func:`one_pass_pack_bytes`): the
    figure to plan with."""
    pack_bytes_a_segment: dict[str, float]
    """Packed bytes a segment: measured on the grown days (repeats) and on one pass (none)."""
    year_gb: dict[str, float]
    """GB a year at the shipped retention, each table at its MB a day as written for the first
    ``pack_after_days``, as a day keeps it while its faces and points are kept, and as packed after
    (:func:`year_with_packing`)."""
    month_mb_a_day: float = 0.0
    """MB of a camera-day from ``pack_after_days`` until the 30-day retentions (packs at one pass's bytes)."""
    month_tables_mb_a_day: dict[str, float] = field(default_factory=dict)
    """Its tables, the packs as measured."""
    late_pack_ms: float = 0.0
    """Milliseconds the second packing took (the passages of the tracks whose faces were purged)."""
    late_packed: dict[str, int] = field(default_factory=dict)
    queries: dict[str, list[float]] = field(default_factory=dict)
    retention_ms: float | None = None
    retention_rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"pack_ms": round(self.pack_ms), "packed": self.packed, "mb_per_camera_day": round(self.mb_a_day, 1),
                "month_mb_per_camera_day": round(self.month_mb_a_day, 1),
                "month_tables_mb_per_camera_day": {k: round(v, 2) for k, v in self.month_tables_mb_a_day.items()},
                "late_pack_ms": round(self.late_pack_ms), "late_packed": self.late_packed,
                "one_pass_mb_per_camera_day": round(self.one_pass_mb_a_day, 1),
                "pack_bytes_a_segment": {k: round(v, 1) for k, v in self.pack_bytes_a_segment.items()},
                "tables_mb_per_camera_day": {k: round(v, 2) for k, v in self.tables_mb_a_day.items()},
                "year_gb_at_retention": {k: round(v, 2) for k, v in self.year_gb.items()},
                "queries_ms": {k: {"p50": round(pct(v, 50), 1), "p95": round(pct(v, 95), 1), "n": len(v)}
                               for k, v in self.queries.items()},
                "retention_ms": None if self.retention_ms is None else round(self.retention_ms, 1),
                "retention_rows": self.retention_rows}


@contextmanager
def backend_url(backend: str, args: argparse.Namespace, workdir: Path, name: str = "storage") -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'{name}.db'}"
    else:
        with fresh_postgres_database(args.pg_admin, "genesis_bench_storage") as url:
            yield url


def retention_days(settings: Settings, table: str) -> int:
    """Days (within a year) the retention purge keeps a table's rows: `genesis.services.rollups.kept_days` for the
    high-volume tables, the unknown clusters as the unknown faces, a run's and a camera's row not at all (one row
    each), every other table ``events_days``."""
    r = settings.retention
    keep = {**kept_days(settings), "unknown_clusters": r.unknown_faces_days, "runs": 0, "cameras": 0}
    return min(keep.get(table, r.events_days), 365)


def year_at_retention(res: BackendResult, grown: StorageStats, frames: int, settings: Settings) -> dict[str, float]:
    """GB per table that a year of this camera keeps under the retention purge (beat's, an embedded run's), from
    the grown days (``frames`` frames; at that size the small tables' first pages no longer count): each table's MB
    a day times the days its rows are kept (:func:`retention_days`; the bench's faces are of nobody enrolled)."""
    return {t.table: res.mb_a_day(res.table_bytes(t.table, grown), frames) * retention_days(settings, t.table) / 1e3
            for t in grown.tables if t.rows}


def late_age(settings: Settings) -> int:
    """Days after which a camera-day keeps no points, attempts or unknown faces (their retention)."""
    r = settings.retention
    return max(r.sightings_days, r.unknown_faces_days, r.packed_after_days() or 0)


def aged_day(grown_mb: dict[str, float], packed_mb: dict[str, float], settings: Settings, age: int
             ) -> dict[str, float]:
    """MB per table of a camera-day ``age`` days old: the passages (``PASSAGE_TABLES`` and ``passage_packs``) as
    packing leaves them (``packed_mb``), every other table still kept then as written (``grown_mb``; those kept
    no longer, such as the points, attempts and unknown faces past 30 days, are gone)."""
    passages = {*PASSAGE_TABLES, "passage_packs"}
    return {name: (packed_mb if name in passages else grown_mb).get(name, 0.0)
            for name in sorted(set(grown_mb) | set(packed_mb)) if retention_days(settings, name) > age}


def year_with_packing(grown_mb: dict[str, float], month_mb: dict[str, float], old_mb: dict[str, float],
                      settings: Settings) -> dict[str, float]:
    """:func:`year_at_retention` with packing: each table's MB a camera-day as written (``grown_mb``) for the first
    ``retention.pack_after_days`` days its rows are kept, as a day keeps it until :func:`late_age` (``month_mb``)
    and as a day past that keeps it (``old_mb``) for the rest."""
    first = settings.retention.packed_after_days() or 365
    late = max(first, late_age(settings))
    out = {}
    for name in sorted(set(grown_mb) | set(month_mb) | set(old_mb)):
        kept = retention_days(settings, name)
        out[name] = (grown_mb.get(name, 0.0) * min(kept, first) + month_mb.get(name, 0.0) * max(0, min(kept, late)
                     - first) + old_mb.get(name, 0.0) * max(0, kept - late)) / 1e3
    return out


def pack_grown(repo: Repository, settings: Settings, res: BackendResult, grown: StorageStats, grown_frames: int,
               left_frames: int, one_pass: float, runs: list[str], repeats: int, progress: Progress) -> PackedDays:
    """Age the grown days: past ``pack_after_days`` pack their passages (timed) and measure what is left; past the
    30-day retentions purge their points, attempts and unknown faces, pack the passages of the tracks that kept a
    face (timed), measure what is left, time the reads of a packed run, and last the retention of a packed
    camera-day (the second: the first one's rows went by :func:`time_retention`)."""
    from genesis.adapters.db.events import EventFilter
    from genesis.api.services import events as event_svc
    from genesis.pipeline.report import build_results

    end = EPOCH0 + (len(runs) + 2) * DAY_S  # after the short run too
    store = AnalyticsStore(repo)
    touched = ["tracks", "zone_events", "line_crossings", "track_faces", "attempt_packs", "point_batches"]
    grown_mb = {t.table: res.mb_a_day(res.table_bytes(t.table, grown), grown_frames) for t in grown.tables if t.rows}

    def measured(done: dict[str, int]) -> tuple[dict[str, float], float]:
        """MB a day per table of what is left (the first day went by time_retention: the other days and the short
        run), and the packs' measured bytes a segment."""
        vacuum_analyze(repo.engine, full=touched)
        after = storage_stats(repo.engine, per_day=False)
        tables = {t.table: res.mb_a_day(res.table_bytes(t.table, after), left_frames) for t in after.tables if t.rows}
        packs_table = after.table("passage_packs")
        return tables, (packs_table.bytes or 0) / done["tracks"] if packs_table and done["tracks"] else 0.0

    task = progress.add_task("pack the grown days", total=2)
    t0 = time.perf_counter()
    counts = store.pack_passages(end)
    pack_ms = 1000 * (time.perf_counter() - t0)
    progress.advance(task)
    month_tables, _ = measured(counts)
    first = settings.retention.packed_after_days() or 365
    month = aged_day(grown_mb, month_tables, settings, first)
    month_planned = {**month, "passage_packs": res.mb_a_day(one_pass * counts["tracks"], left_frames)}
    camera = settings.camera(CAMERA)
    day = runs[len(runs) // 2]
    zone = camera.zones[0].name
    # While the points are kept: the sightings of a packed run, whose zones are read from the packs.
    month_cases: dict[str, Callable[[], Any]] = {
        "API sightings page, a packed run, zone filter": lambda: event_svc.sightings(
            repo, EventFilter(run=day, zone=zone), 50, 0),
        "API sightings page, a packed run, zone filter, page 100": lambda: event_svc.sightings(
            repo, EventFilter(run=day, zone=zone), 50, 5000),
    }
    month_queries: dict[str, list[float]] = {k: [timed_ms(call) for _ in range(repeats)]
                                             for k, call in month_cases.items()}

    store.purge_before({"sightings": end, "unknown_faces": end, "events": 0.0}, {})
    faces_gone = datetime.now(UTC) + timedelta(days=settings.retention.unknown_faces_days + 1)
    purge_unknown_faces(IdentityStore(repo, BiometricCipher([])), settings.retention.unknown_faces_days, "bench",
                        faces_gone)
    t0 = time.perf_counter()
    late = store.pack_passages(end)
    late_ms = 1000 * (time.perf_counter() - t0)
    progress.advance(task)
    every = {k: counts[k] + late[k] for k in counts}
    tables, per_segment = measured(every)
    old_day = aged_day(grown_mb, tables, settings, late_age(settings))
    planned = {**old_day, "passage_packs": res.mb_a_day(one_pass * every["tracks"], left_frames)}
    out = PackedDays(pack_ms, counts, sum(old_day.values()), old_day, sum(planned.values()),
                     {"grown days (repeats)": per_segment, "one pass (no repeats)": one_pass},
                     year_with_packing(grown_mb, month_planned, planned, settings),
                     sum(month_planned.values()), month, late_ms, late)

    def report() -> None:
        run = repo.run(day)
        assert run is not None
        build_results(repo, run, camera)

    cases: dict[str, Callable[[], Any]] = {
        "run report, a packed day-long run (genesis report)": report,
        "API tracks page, packed days": lambda: event_svc.tracks(repo, EventFilter(camera=CAMERA), 50, 0),
        "API tracks page, a packed run, page 100": lambda: event_svc.tracks(repo, EventFilter(run=day), 50, 5000),
        "API tracks page, a packed run, zone filter": lambda: event_svc.tracks(
            repo, EventFilter(run=day, zone=zone), 50, 0),
    }
    out.queries = {**month_queries, **{k: [] for k in cases}}
    task = progress.add_task("queries, packed", total=repeats * len(cases))
    for _ in range(repeats):
        for name, call in cases.items():
            out.queries[name].append(timed_ms(call))
            progress.advance(task)
    out.retention_ms, out.retention_rows = time_retention(repo, day=1)
    return out


# -- 4. queries over N camera-days ---------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def grow(repo: Repository, rec: Recorded, run_id: str, have: int, day_frames: int, days: int, progress: Progress
         ) -> tuple[list[str], str]:
    """The run grown to ``day_frames`` frames (doubling), then copied to ``days`` runs a day apart; and a copy of
    the run as written (``have`` frames, a video file's run) after the last day. Every 10th track is named
    :data:`IDENTITY`, and one in 1,000 one of :data:`VISITORS` people. (day runs, the short run)."""
    task = progress.add_task("copy rows (SQL)", total=days)
    interval = rec.stride / rec.fps
    short = f"{run_id[:-4]}s000"
    copy_run_rows(repo.engine, run_id, short, RunCopy(ts_shift=days * DAY_S), 0)
    n = 1
    while have < day_frames:
        take = min(have, day_frames - have)
        track, window = run_extent(repo.engine, run_id)
        copy_run_rows(repo.engine, run_id, run_id, RunCopy(
            ts_shift=have * interval, seq_shift=have * rec.stride, track_shift=track + 1, window_shift=window + 1,
            ts_below=EPOCH0 + take * interval), n)
        have += take
        n += 1
    set_run_span(repo.engine, run_id, EPOCH0, EPOCH0 + have * interval)
    runs = [run_id]
    progress.advance(task)
    for d in range(1, days):
        new = f"{run_id[:-4]}{d:04d}"
        copy_run_rows(repo.engine, run_id, new, RunCopy(ts_shift=d * DAY_S), n)
        runs.append(new)
        n += 1
        progress.advance(task)
    label_tracks(repo.engine, [*runs, short], IDENTITY, 10)
    for k in range(VISITORS):
        label_tracks(repo.engine, [*runs, short], visitor(k), 1000, 10 * k + 5)
    vacuum_analyze(repo.engine)
    return runs, short


def timed_ms(call: Callable[[], Any]) -> float:
    """Milliseconds of one call."""
    t0 = time.perf_counter()
    call()
    return 1000 * (time.perf_counter() - t0)


def time_queries(repo: Repository, settings: Settings, runs: list[str], short: str, short_frames: int, repeats: int,
                 progress: Progress) -> tuple[dict[str, list[float]], dict[str, int]]:
    from genesis.adapters.db.events import EventFilter, read_events
    from genesis.api.services import alerts as alert_svc
    from genesis.api.services import console as console_svc
    from genesis.api.services import events as event_svc
    from genesis.pipeline.report import build_results
    from genesis.services.heatmap import grid_image

    camera = settings.camera(CAMERA)
    analytics = AnalyticsStore(repo)
    alert_store = AlertStore(repo.engine)
    ident = IdentityStore(repo)
    day = len(runs) // 2  # a day in the middle
    lo = EPOCH0 + day * DAY_S
    sizes: dict[str, int] = {}

    def report(run_id: str, label: str) -> None:
        run = repo.run(run_id)
        assert run is not None
        people = build_results(repo, run, camera)["people"]
        sizes[f"{label}: tracks"], sizes[f"{label}: identities"] = int(people["tracks"]), int(people["identities"])

    def timeline(name: str, label: str) -> None:
        page = console_svc.identity_summary(repo, ident, settings, name)
        sizes[f"{label}: runs"], sizes[f"{label}: tracks"] = len(page["runs"]), int(page["tracks"])

    def timeline_whole_reports() -> None:
        """The same page the former way: each run's whole report, of which the identity's entry is kept."""
        _ident, order = console_svc.runs_of(repo, IDENTITY)
        found = 0
        for run_id in order[:console_svc.MAX_RUNS]:
            run = repo.run(run_id)
            assert run is not None
            found += any(i["name"] == IDENTITY for i in build_results(repo, run, camera)["identities"])
        sizes["timeline (whole reports): runs"] = found

    def heatmap() -> None:
        heat = analytics.heat_grid(CAMERA, lo, lo + DAY_S)
        assert heat is not None
        grid_image(heat, None)
        sizes["heatmap: foot points"] = heat.points

    def sorted_tracks(repo: Repository, f: EventFilter) -> None:
        with read_events(repo.engine) as db:
            db.tracks_sorted(f, 50, 0)

    # A day whose hours beat has not merged yet (beat not running); then the same day as beat's storage upkeep
    # leaves every hour that has ended: one heat row per run and hour, what the cases below read.
    out = {"day heatmap, hours not merged (beat not running)": [timed_ms(heatmap) for _ in range(repeats)]}
    sizes["heatmap: foot points, hours not merged"] = sizes["heatmap: foot points"]
    sizes["heat rows merged by beat's upkeep"] = analytics.compact_heat(EPOCH0 + (len(runs) + 1) * DAY_S)

    f = EventFilter(camera=CAMERA)
    cases: dict[str, Callable[[], Any]] = {
        "run report, a day-long run (genesis report)": lambda: report(runs[day], "report of a day"),
        f"run report, a {short_frames:,}-frame run (genesis report)": lambda: report(short, "report of a short run"),
        "identity timeline (console), one in 10 segments": lambda: timeline(IDENTITY, "timeline of one in 10"),
        "identity timeline (console), a visitor (one in 1,000)": lambda: timeline(visitor(0), "timeline of a visitor"),
        "identity timeline, whole reports (before)": timeline_whole_reports,
        "day heatmap (genesis heatmap; hours merged by beat)": heatmap,
        "API runs page": lambda: event_svc.runs(repo, CAMERA, 50, 0),
        "API tracks page": lambda: event_svc.tracks(repo, f, 50, 0),
        "API tracks page, one ordered query (before)": lambda: sorted_tracks(repo, f),
        "API sightings page": lambda: event_svc.sightings(repo, f, 50, 0),
        "API sightings page, one run": lambda: event_svc.sightings(repo, EventFilter(camera=CAMERA, run=runs[day]),
                                                                   50, 0),
        "API sightings page, one run, zone filter": lambda: event_svc.sightings(
            repo, EventFilter(run=runs[day], zone=camera.zones[0].name), 50, 0),
        "API alerts page": lambda: alert_svc.alerts(alert_store, AlertFilter(camera=CAMERA), 50, 0),
        "API sightings page, identity filter, one in 10 segments": lambda: event_svc.sightings(
            repo, EventFilter(identity=IDENTITY), 50, 0),
        "API sightings page, identity filter, a visitor": lambda: event_svc.sightings(
            repo, EventFilter(identity=visitor(0)), 50, 0),
        "API tracks page, identity filter, one in 10 segments": lambda: event_svc.tracks(
            repo, EventFilter(identity=IDENTITY), 50, 0),
        "API tracks page, identity filter, a visitor": lambda: event_svc.tracks(
            repo, EventFilter(identity=visitor(0)), 50, 0),
    }
    out.update({k: [] for k in cases})
    task = progress.add_task("queries", total=repeats * len(cases))
    for _ in range(repeats):  # rounds alternate the cases, so a slow minute hits them all
        for name, call in cases.items():
            out[name].append(timed_ms(call))
            progress.advance(task)
    return out, sizes


def time_retention(repo: Repository, day: int = 0) -> tuple[float, dict[str, int]]:
    """The retention purge of camera-day ``day`` (the first by default; every kind's cutoff at the end of that day,
    as the daily purge does for each kind when the day reaches its age): milliseconds and the rows (points) it
    removed per table."""
    cutoff = EPOCH0 + (day + 1) * DAY_S
    counts: dict[str, int] = {}
    ms = timed_ms(lambda: counts.update(AnalyticsStore(repo).purge_before(
        {"sightings": cutoff, "events": cutoff, "unknown_faces": cutoff}, {})))
    return ms, {k: v for k, v in counts.items() if v}


# -- the command ---------------------------------------------------------------------------------


def run(args: argparse.Namespace, argv: list[str]) -> list[BackendResult]:
    console = Console() if sys.stdout.isatty() else Console(width=200)
    results: list[BackendResult] = []
    with tempfile.TemporaryDirectory(prefix="genesis-bench-storage-") as tmp:
        workdir = Path(tmp)
        config = workdir / "settings.yaml"
        doc = bench_config(str(Path(args.source).resolve()))
        doc["identities"] = {"unknowns_without_gallery": True}  # faces searched and stored as with a gallery
        doc["cameras"][0]["zones"][0]["max_occupancy"] = 4  # crowding alerts: the alerts page has rows
        if not args.faces:
            doc["recognition"] = {"enabled": False}
        import yaml

        config.write_text(yaml.safe_dump(doc))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GENESIS_DATABASE")}
        env["GENESIS_DATABASE_URL"] = f"sqlite:///{workdir / 'unused.db'}"
        settings = load_settings(config, env)
        cipher = BiometricCipher([BiometricCipher.new_key().encode()]) if args.encrypted else BiometricCipher.from_env()
        args.biometric = "encrypted" if cipher.enabled else "in the clear"
        r = settings.retention
        args.retention_days = {"points": r.sightings_days, "unknown faces": r.unknown_faces_days,
                               "events": r.events_days}
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=not sys.stdout.isatty()) as progress:
            rec = record(settings, args.source, args.fps, args.frames, workdir, progress)
            camera_fps = args.fps  # the projection is for a camera at --fps, whatever the clip's exact rate
            for backend in args.backends:
                with backend_url(backend, args, workdir) as url, Repository(url) as repo:
                    vacuum_analyze(repo.engine)
                    empty = storage_stats(repo.engine, per_day=False)
                    run_id = f"bench{'0' * 23}0000"
                    frames, write_s = write_loops(repo, settings, rec, args.loops, run_id, progress, cipher)
                    vacuum_analyze(repo.engine)
                    full = storage_stats(repo.engine, per_day=False)
                    res = BackendResult(backend, full.method, frames, write_s, empty, full, camera_fps)
                    with backend_url(backend, args, workdir, "merged") as url2, Repository(url2) as repo2:
                        write_loops(repo2, settings, rec, args.loops, run_id, progress, cipher)
                        res.heat_rows_merged = AnalyticsStore(repo2).compact_heat(
                            EPOCH0 + args.loops * rec.span_s + 2 * 3600)  # every hour of the run has ended
                        # The pages the merge freed: a running site's next hours fill them again, which this
                        # run's few minutes of camera-time cannot show; VACUUM FULL gives them back instead.
                        vacuum_analyze(repo2.engine, full=["heatmap_cells"])
                        res.merged = storage_stats(repo2.engine, per_day=False)
                    if args.query_days and backend in args.query_backends:
                        runs, short = grow(repo, rec, run_id, frames, args.query_day_frames, args.query_days,
                                           progress)
                        res.queries, res.query_rows = time_queries(repo, settings, runs, short, frames,
                                                                   args.query_repeats, progress)
                        vacuum_analyze(repo.engine, full=["heatmap_cells"])  # the hours the query step merged
                        grown = storage_stats(repo.engine, per_day=False)
                        s = grown.table("point_batches")
                        res.query_rows["point_batches rows"] = s.rows if s else 0
                        res.query_rows["database MB"] = round(grown.database_bytes / 1e6)
                        grown_frames = args.query_days * args.query_day_frames + frames
                        res.at_scale_mb = res.mb_a_day(res.data_bytes_of(grown), grown_frames)
                        res.year_gb = year_at_retention(res, grown, grown_frames, settings)
                        res.retention_ms, res.retention_rows = time_retention(repo)  # it deletes the first day
                        if args.pack:
                            left = (args.query_days - 1) * args.query_day_frames + frames
                            res.packed = pack_grown(repo, settings, res, grown, grown_frames, left,
                                                    one_pass_pack_bytes(rec), runs, args.query_repeats, progress)
                    results.append(res)
        print_results(console, rec, results, args, argv)
    if args.json:
        Path(args.json).write_text(json.dumps({"frames_per_pass": rec.frames, "stride": rec.stride,
                                               "biometric": args.biometric,
                                               "results": [r.to_dict() for r in results]}, indent=1))
    return results


def print_results(console: Console, rec: Recorded, results: list[BackendResult], args: argparse.Namespace,
                  argv: list[str]) -> None:
    def out(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True, markup=False)

    people = sum(len(b.sightings) for b in rec.sink.batches) / max(1, rec.frames)
    out(f"clip: {rec.frames} frames at {rec.fps / rec.stride:.2f} fps (stride {rec.stride}), {people:.1f} people per "
        f"frame, {len(rec.sink.tracks)} track segments; {args.loops} loop(s) = {args.loops * rec.span_s:.0f} s of "
        f"camera-time; detection pass {rec.seconds:.1f} s; embeddings and face crops stored {args.biometric}")
    body = [[r.backend, r.method, str(r.frames), f"{r.empty.tables_bytes:,}", f"{r.data_bytes:,}",
             f"{r.bytes_per_frame:,.0f}", f"{r.mb_per_camera_day:,.0f}", f"{r.frames / r.write_s:.0f}"]
            for r in results]
    out(markdown_table(("database", "measured with", "frames", "empty schema (B)", "data (B)", "bytes/frame",
                        f"MB per camera-day @ {args.fps:g} fps", "frames/s written"), body))
    names = sorted({t.table for r in results for t in r.full.tables if t.rows})
    rows = []
    for name in names:
        row = [name]
        for r in results:
            t = r.full.table(name)
            n = t.rows if t else 0
            row += [f"{n / r.frames:.2f}", f"{r.table_bytes(name) / r.frames:,.0f}"]
        rows.append(row)
    cols = ["table"] + [f"{r.backend} {c}" for r in results for c in ("rows/frame", "bytes/frame")]
    out(markdown_table(cols, rows))
    for r in results:
        out(f"{r.backend}: {r.bytes_per_frame:.1f} bytes per frame, {r.mb_per_camera_day:.2f} MB per camera-day")
        if r.merged_mb_per_camera_day is not None:
            out(f"{r.backend}: {r.merged_mb_per_camera_day:.2f} MB per camera-day once each ended hour's heat rows are "
                f"merged (beat's storage upkeep, an embedded run's): heatmap_cells "
                f"{r.table_bytes('heatmap_cells') / r.frames:,.0f} -> "
                f"{r.table_bytes('heatmap_cells', r.merged) / r.frames:,.0f} bytes a frame ({r.heat_rows_merged} "
                "rows merged away)")
        if r.year_gb:
            out(f"{r.backend}: a year of this camera at the shipped retention keeps {sum(r.year_gb.values()):,.0f} GB ("
                + ", ".join(f"{k} {v:,.1f}" for k, v in sorted(r.year_gb.items(), key=lambda kv: -kv[1]) if v >= 0.05)
                + f"; {', '.join(f'{k} {d} d' for k, d in args.retention_days.items())})")
        if r.at_scale_mb is not None:
            out(f"{r.backend}: {r.at_scale_mb:,.0f} MB per camera-day over the {args.query_days} grown days (rows "
                "copied in SQL; without the small tables' first pages)")
        if r.queries:
            out(f"{r.backend} queries over {args.query_days} camera-days of {args.query_day_frames} frames "
                f"({', '.join(f'{k} {v}' for k, v in r.query_rows.items())}):")
            out(markdown_table(("query", "p50 ms", "p95 ms", "calls"),
                               [[k, f"{pct(v, 50):.1f}", f"{pct(v, 95):.1f}", str(len(v))]
                                for k, v in r.queries.items()]))
        if r.retention_ms is not None:
            out(f"{r.backend} retention of the first camera-day (every kind's cutoff at its end): "
                f"{r.retention_ms:.0f} ms; removed {', '.join(f'{k} {v:,}' for k, v in r.retention_rows.items())}")
        if r.packed is not None:
            p = r.packed
            out(f"{r.backend}, the grown days aged past pack_after_days (their unnamed passages packed "
                f"in {p.pack_ms / 1e3:,.1f} s: " + ", ".join(f"{k} {v:,}" for k, v in p.packed.items()) + ")")
            out(f"{r.backend}: {p.month_mb_a_day:,.1f} MB per camera-day from pack_after_days until the 30-day "
                "retentions, the packs at the bytes of one pass packed on its own (as measured: "
                + ", ".join(f"{k} {v:,.1f}" for k, v in sorted(p.month_tables_mb_a_day.items(), key=lambda kv: -kv[1])
                            if v >= 0.05) + ")")
            out(f"{r.backend}, the grown days aged past the 30-day retentions (points, attempts, unknown faces "
                f"purged; what was left to pack packed in {p.late_pack_ms / 1e3:,.1f} s: "
                + ", ".join(f"{k} {v:,}" for k, v in p.late_packed.items()) + ")")
            out(f"{r.backend}: {p.one_pass_mb_a_day:,.1f} MB per camera-day once packed (a day older than the "
                "30-day retentions: what is still kept then), the packs at the bytes of one pass packed on its own "
                f"({p.mb_a_day:,.1f} as measured: "
                + ", ".join(f"{k} {v:,.1f}" for k, v in sorted(p.tables_mb_a_day.items(), key=lambda kv: -kv[1])
                            if v >= 0.05) + "; packed bytes a segment: "
                + ", ".join(f"{k} {v:,.1f}" for k, v in p.pack_bytes_a_segment.items()) + ")")
            out(f"{r.backend}: a year of this camera at the shipped retention, with packing, keeps "
                f"{sum(p.year_gb.values()):,.1f} GB ("
                + ", ".join(f"{k} {v:,.1f}" for k, v in sorted(p.year_gb.items(), key=lambda kv: -kv[1]) if v >= 0.05)
                + ")")
            out(markdown_table(("query, packed days", "p50 ms", "p95 ms", "calls"),
                               [[k, f"{pct(v, 50):.1f}", f"{pct(v, 95):.1f}", str(len(v))]
                                for k, v in p.queries.items()]))
            if p.retention_ms is not None:
                out(f"{r.backend} retention of a packed camera-day: {p.retention_ms:.0f} ms; removed "
                    + ", ".join(f"{k} {v:,}" for k, v in p.retention_rows.items()))
    out(f"{os.cpu_count()} CPUs; load average {load_average()}")
    out("command: " + shlex.join(["python", "-m", "genesis.bench", "storage", *argv]))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[2:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m genesis.bench storage", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=DEFAULT_SOURCE, help="Video (default: %(default)s).")
    ap.add_argument("--fps", type=float, default=5.0, help="Camera rate: stride = clip fps / fps (default 5).")
    ap.add_argument("--frames", type=int, help="At most this many frames of the clip per pass (default: all).")
    ap.add_argument("--loops", type=int, default=10, help="Passes written, one after the other (default 10).")
    ap.add_argument("--backends", default="postgresql,sqlite", help="Comma-separated (default: %(default)s).")
    ap.add_argument("--no-faces", dest="faces", action="store_false", help="Recognition off (no attempts, no faces).")
    ap.add_argument("--encrypted", action="store_true",
                    help="Store embeddings and face crops encrypted, as a site with GENESIS_EMBEDDING_KEY set does "
                         "(a fresh key; default: as the environment says).")
    ap.add_argument("--query-days", type=int, default=0, help="Time queries over this many camera-days (0: off).")
    ap.add_argument("--query-day-frames", type=int, default=5 * DAY_S,
                    help="Frames per camera-day for --query-days (default 5 fps x 86400 = %(default)s).")
    ap.add_argument("--query-repeats", type=int, default=5, help="Calls of each query (default 5).")
    ap.add_argument("--no-pack", dest="pack", action="store_false",
                    help="With --query-days: do not age the grown days and pack their passages afterwards.")
    ap.add_argument("--query-backends", default="postgresql",
                    help="Backends timed by --query-days (default: %(default)s).")
    ap.add_argument("--pg-admin", default=PG_ADMIN, help="PostgreSQL URL allowed to CREATE DATABASE.")
    ap.add_argument("--json", type=Path, help="Also write the figures to this file.")
    args = ap.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.query_backends = [b.strip() for b in args.query_backends.split(",") if b.strip()]
    bad = [b for b in [*args.backends, *args.query_backends] if b not in BACKENDS]
    if bad or not args.backends:
        ap.error(f"unknown backend {', '.join(bad) or '(none)'}: one of {', '.join(BACKENDS)}")
    if args.loops < 1 or args.fps <= 0 or (args.frames is not None and args.frames < 1):
        ap.error("--loops and --frames must be at least 1, --fps positive")
    if not Path(args.source).is_file():
        ap.error(f"no such video: {args.source}")
    run(args, argv)


if __name__ == "__main__":
    main()
