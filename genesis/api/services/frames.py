"""Images: the heatmap PNG of a camera over a time range, and the camera tile.

Both are drawn on the camera's stored snapshot (`genesis.services.heatmap.SnapshotKeeper`: blurred
as the camera's privacy settings say when it was stored, refreshed every
``analytics.snapshot_every_s``). A frame of the Redis frame store is raw (never blurred): it is used
only for a camera whose blur is off (``raw_ok``) — the tile of a running camera then shows its newest
frame with the tracks' stored points drawn on it. Without either, the tile is a placeholder that says so
and the heatmap is drawn on black. The heatmap itself is the stored foot-point grids (``heatmap_cells``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import cv2
import numpy as np
import redis

from genesis.adapters.db import Repository
from genesis.adapters.db.analytics import AnalyticsStore
from genesis.adapters.db.events import LabelledBox, read_events
from genesis.adapters.frame_store import FrameDecodeError, decode_jpeg
from genesis.adapters.redis_keys import frame_pattern
from genesis.api.services.events import EventFilter, latest_run
from genesis.domain.heat import coarsen
from genesis.stages.analytics import render_heatmap

PLACEHOLDER_SIZE = (640, 360)
MAX_HEATMAP_SIDE = 4096
"""Heatmaps of absurd stored frame sizes are refused rather than allocated."""


class NoDataError(LookupError):
    """Nothing stored for what was asked."""


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("cannot encode PNG")
    return buf.tobytes()


def _jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("cannot encode JPEG")
    return buf.tobytes()


def _size(meta: dict[str, Any] | None) -> tuple[int, int] | None:
    meta = meta or {}
    w, h = meta.get("width"), meta.get("height")
    if isinstance(w, int) and isinstance(h, int) and 0 < w <= MAX_HEATMAP_SIDE and 0 < h <= MAX_HEATMAP_SIDE:
        return w, h
    return None


@dataclass(frozen=True, slots=True)
class LatestFrame:
    run_id: str
    seq: int
    image: np.ndarray


def latest_frame(client: redis.Redis, camera: str, run_id: str) -> LatestFrame | None:
    """The newest frame of the run still in the Redis frame store (None if none or Redis is down)."""
    best: tuple[int, bytes] | None = None
    try:
        pattern = frame_pattern(camera, run_id)
        seqs = []
        for key in client.scan_iter(match=pattern, count=500):
            name = key.decode() if isinstance(key, bytes) else str(key)
            tail = name.rsplit(":", 1)[-1]
            if tail.isdigit():
                seqs.append((int(tail), name))
        for seq, name in sorted(seqs, reverse=True)[:3]:
            data = client.get(name)
            if isinstance(data, bytes):
                best = (seq, data)
                break
    except redis.RedisError:
        return None
    if best is None:
        return None
    try:
        return LatestFrame(run_id, best[0], decode_jpeg(best[1]))
    except FrameDecodeError:
        return None


def stored_snapshot(repo: Repository, camera: str) -> tuple[np.ndarray, datetime] | None:
    """The camera's stored snapshot (decoded) and when it was taken; None when none or undecodable."""
    found = AnalyticsStore(repo).snapshot(camera)
    if found is None:
        return None
    try:
        return decode_jpeg(found[0]), found[3]
    except FrameDecodeError:
        return None


def heatmap_png(repo: Repository, client: redis.Redis, camera: str, f: EventFilter, cell: int,
                raw_ok: bool = False) -> bytes:
    """The heatmap of the camera's stored foot-point grids (``heatmap_cells``) in the filter's runs and
    time range (whole hours), on the stored snapshot (on the newest raw frame only with ``raw_ok`` and no
    snapshot; else on black). ``cell`` must be a multiple of the stored grid's cell."""
    with read_events(repo.engine) as db:
        runs = db.camera_runs(camera, f)
    if not runs:
        raise NoDataError(f"no runs of camera {camera!r} in that range")
    heat = AnalyticsStore(repo).heat_of_runs(camera, [r.id for r in runs], f.ts_from, f.ts_to)
    if heat is None:
        size = next((s for s in (_size(r.meta) for r in runs) if s is not None), PLACEHOLDER_SIZE)
        width, height = min(max(size[0], 16), MAX_HEATMAP_SIDE), min(max(size[1], 16), MAX_HEATMAP_SIDE)
        grid = np.zeros((1, 1), dtype=np.int64)
    else:
        width, height = heat.width, heat.height
        grid = coarsen(heat.grid, heat.cell_px, cell)
    snap = stored_snapshot(repo, camera)
    background = snap[0] if snap is not None else None
    if background is None and raw_ok:
        frame = latest_frame(client, camera, runs[0].id)
        background = frame.image if frame else None
    return _png(render_heatmap(grid, background, width, height))


def _draw(image: np.ndarray, rows: list[LabelledBox], scale: float) -> None:
    for r in rows:
        x1, y1, x2, y2 = (int(v * scale) for v in (r.x1, r.y1, r.x2, r.y2))
        colour = (80, 200, 80) if r.identity_name else (0, 200, 255)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        label = f"#{r.track_id} {r.identity_name or 'unknown'}"
        cv2.putText(image, label, (x1, max(12, y1 - 5)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)


def camera_tile(repo: Repository, client: redis.Redis, camera: str, raw_ok: bool = False) -> tuple[bytes, str]:
    """(JPEG, source) of the camera tile; source is ``frame-store`` (the newest raw frame with the
    stored sightings drawn: only with ``raw_ok``, the camera's blur being off), ``snapshot`` (the
    stored snapshot, blurred as stored, with when it was taken) or ``placeholder``."""
    run_id = latest_run(repo, camera)
    frame = latest_frame(client, camera, run_id) if run_id and raw_ok else None
    if frame is None:
        snap = stored_snapshot(repo, camera)
        if snap is not None:
            image = snap[0].copy()
            note = f"snapshot {snap[1].strftime('%Y-%m-%d %H:%M:%S')} UTC"
            h = image.shape[0]
            cv2.rectangle(image, (0, h - 26), (12 + 9 * len(note), h), (30, 30, 30), -1)
            cv2.putText(image, note, (8, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (235, 235, 235), 1, cv2.LINE_AA)
            return _jpeg(image), "snapshot"
    with read_events(repo.engine) as db:
        if frame is not None:
            image = frame.image.copy()
            _draw(image, db.sightings_at(frame.run_id, frame.seq), 1.0)
            return _jpeg(image), "frame-store"
        w, h = PLACEHOLDER_SIZE
        image = np.full((h, w, 3), 60, dtype=np.uint8)
        note = "no recent frame stored"
        if run_id is not None:
            meta = db.run_meta(run_id)
            last_seq = db.last_seq(run_id)
            size = _size(meta)
            if last_seq is not None and size is not None:
                _draw(image, db.sightings_at(run_id, last_seq), min(w / size[0], h / size[1]))
                note = f"no recent frame stored: last sightings (frame {last_seq})"
        else:
            note = "no runs of this camera yet"
    cv2.putText(image, note, (10, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (230, 230, 230), 1, cv2.LINE_AA)
    cv2.putText(image, camera, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (230, 230, 230), 2, cv2.LINE_AA)
    return _jpeg(image), "placeholder"


def live_counts(repo: Repository, camera: str) -> dict[str, Any]:
    """Counts of the camera's newest run: people in the last stored frame, tracks, identities."""
    run_id = latest_run(repo, camera)
    if run_id is None:
        return {"camera_id": camera, "run_id": None, "status": None, "frames": 0, "in_view": 0, "tracks": 0,
                "identities": []}
    with read_events(repo.engine) as db:
        status, frames = db.run_status(run_id)
        last_seq = db.last_seq(run_id)
        in_view = 0
        if last_seq is not None and status == "running":  # nobody is "in view" of a run that ended
            in_view = db.in_frame(run_id, last_seq)
        tracks = db.track_count(run_id)
        names = db.identities_seen(run_id)
    return {"camera_id": camera, "run_id": run_id, "status": status, "frames": frames,
            "in_view": in_view, "tracks": tracks, "identities": sorted(str(n) for n in names)}
