"""The operator's console: faces (crops) of tracks, clusters and identities, the review queue and
its actions, the per-identity summary (from `report.json`'s own function) and the live view.

Nothing here recomputes what another service computes: an identity's numbers are the entries of
`genesis.pipeline.report.entry_of` (report.json's entry, read from the identity's own tracks) for the runs
where `events.tracks` finds them, summed.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from genesis.adapters.db import IdentitySummary, Repository, RunRecord
from genesis.api.services.events import identity_runs
from genesis.config import Settings
from genesis.identities import review
from genesis.identities.store import IdentityError, IdentityStore
from genesis.pipeline.report import entry_of
from genesis.services.live import LiveImage, mark_watched, read_latest

MAX_RUNS = 50
"""An identity's page sums the newest runs it was seen in, at most this many (``runs_total`` says how many)."""


class NotFoundError(LookupError):
    pass


def face_url(run_id: str, track_id: int, segment: int = 0) -> str:
    """The address of one track segment's face: faces are per segment, never per track."""
    return f"/api/tracks/{run_id}/{track_id}/segments/{segment}/face.jpg"


def segment_name(run_id: str, track_id: int, segment: int) -> str:
    """How the console names a face: run-qualified (several runs have a track 1), with its segment."""
    return f"run {run_id[:8]} · track {track_id}" + (f" · segment {segment}" if segment else "")


def wall_time(started_at: datetime | None, ts: float) -> datetime | None:
    """A media time of a run as a wall-clock time: live sources stamp epoch seconds, files count from 0."""
    if ts > 1e9:
        return datetime.fromtimestamp(ts, UTC)
    if started_at is None:
        return None
    start = started_at if started_at.tzinfo else started_at.replace(tzinfo=UTC)
    return start + timedelta(seconds=ts)


def face_out(ref: review.FaceRef) -> dict[str, Any]:
    return {"run_id": ref.run_id, "track_id": ref.track_id, "segment": ref.segment,
            "label": segment_name(ref.run_id, ref.track_id, ref.segment), "camera_id": ref.camera_id, "ts": ref.ts,
            "seen_at": wall_time(ref.started_at, ref.ts), "identity": ref.identity, "distance": ref.distance,
            "unknown": ref.unknown, "face": face_url(ref.run_id, ref.track_id, ref.segment) if ref.has_crop else None,
            "centroid_distance": ref.centroid_distance}


def cluster_faces(store: IdentityStore, cluster: str, limit: int, offset: int = 0,
                  spread: bool = False) -> dict[str, Any]:
    """A page of a cluster's faces, most typical first; ``spread``: a sample over all of them instead
    (`genesis.identities.review.sample`), so an odd one out shows on the card."""
    try:
        faces = review.cluster_faces(store, cluster)
    except IdentityError as exc:
        raise NotFoundError(str(exc)) from None
    shown = review.sample(faces, limit) if spread else faces[offset: offset + limit]
    return {"cluster": cluster, "total": len(faces), "limit": limit, "offset": 0 if spread else offset,
            "sample": spread, "items": [face_out(f) for f in shown]}


def review_page(store: IdentityStore, settings: Settings, limit: int, offset: int) -> dict[str, Any]:
    """A page of the review queue; each item is one segment's face (`face_out`)."""
    emb = settings.recognition.embedder
    refs, total = review.review_queue(store, emb.model, emb.cosine_threshold, settings.console.review_margin,
                                      limit, offset)
    return {"items": [face_out(r) | {"reason": "low margin" if r.identity else "unrecognised"} for r in refs],
            "total": total, "limit": limit, "offset": offset, "threshold": emb.cosine_threshold,
            "margin": settings.console.review_margin}


def photos(store: IdentityStore, name: str, limit: int, offset: int) -> dict[str, Any]:
    """A page of the identity's enrolled faces: kept photo crops, then track faces enrolled from the console."""
    try:
        found = review.enrolled_faces(store, name)
    except IdentityError as exc:
        raise NotFoundError(str(exc)) from None
    items = [{"id": f.photo_id, "photo": f.photo,
              "face": f"/api/photos/{f.photo_id}/face.jpg" if f.photo_id is not None
              else face_url(str(f.run_id), int(f.track_id or 0), f.segment)} for f in found[offset: offset + limit]]
    return {"items": items, "total": len(found), "limit": limit, "offset": offset}


def _merge_zone(into: dict[str, Any], entry: dict[str, Any]) -> None:
    into["visits"] = into.get("visits", 0) + int(entry["visits"])
    into["dwell_s"] = round(into.get("dwell_s", 0.0) + float(entry["dwell_s"]), 3)
    into["max_dwell_s"] = max(into.get("max_dwell_s", 0.0), float(entry["max_dwell_s"]))
    into["mean_dwell_s"] = round(into["dwell_s"] / into["visits"], 3) if into["visits"] else 0.0


def _own_face(refs: list[review.FaceRef], t: float | None = None) -> dict[str, Any]:
    """The face of the identity's own segment of a track (the one nearest ``t``), never another segment's."""
    kept = [r for r in refs if r.has_crop]
    if not kept:
        return {"segment": None, "face": None}
    ref = kept[0] if t is None else min(kept, key=lambda r: abs(r.ts - t))
    return {"segment": ref.segment, "face": face_url(ref.run_id, ref.track_id, ref.segment)}


def runs_of(repo: Repository, name: str) -> tuple[IdentitySummary, list[str]]:
    """The identity's record and the runs it was seen in, newest first (one grouped read of its track
    segments, not a page of them). NotFoundError: no identity of that name."""
    ident = next((i for i in repo.identities() if i.name == name), None)
    if ident is None:
        raise NotFoundError(f"no identity named {name!r}")
    return ident, identity_runs(repo, name)


def _entries(repo: Repository, settings: Settings, name: str,
             run_ids: list[str]) -> list[tuple[RunRecord, dict[str, Any]]]:
    """Each run's entry of ``report.json`` for the identity (runs gone, or where it has none, are left out), in
    the order of ``run_ids``: the runs and the identity's rows of all of them in one read each."""
    runs = repo.runs_by_id(run_ids)
    passages = repo.identity_rows(run_ids, name)
    out = []
    for run_id in run_ids:
        run, rows = runs.get(run_id), passages.get(run_id)
        if run is None or rows is None:
            continue
        entry = entry_of(settings.camera(run.camera_id), name, rows)
        if entry is not None:
            out.append((run, entry))
    return out


def _faces_by_run(store: IdentityStore, run_ids: list[str], name: str) -> dict[str, list[review.FaceRef]]:
    """The faces of the segments named ``name`` in these runs, by run."""
    out: dict[str, list[review.FaceRef]] = {}
    for ref in review.track_faces_of(store, run_ids, identity=name).values():
        out.setdefault(ref.run_id, []).append(ref)
    return out


def _run_out(run: RunRecord, entry: dict[str, Any], name: str, faces: list[review.FaceRef]) -> dict[str, Any]:
    """One run of an identity's timeline: its report entry, its tracks and events with the faces of the
    identity's own segments (a split track's other segments show other people); ``faces``: the run's faces of
    the segments named ``name`` (`_faces_by_run`)."""
    mine: dict[int, list[review.FaceRef]] = {}
    tracks = set(entry["tracks"])
    for ref in faces:
        if ref.track_id in tracks:
            mine.setdefault(ref.track_id, []).append(ref)
    return {
        "run_id": run.run_id, "camera_id": run.camera_id, "started_at": run.started_at, "report": entry,
        "tracks": [{"track_id": tid, "label": segment_name(run.run_id, tid, 0), **_own_face(mine.get(tid, []))}
                   for tid in entry["tracks"]],
        "timeline": [ev | {"at": wall_time(run.started_at, float(ev["t"])),
                           **_own_face(mine.get(ev["track"], []), float(ev["t"]))} for ev in entry["timeline"]],
    }


def identity_timeline(repo: Repository, store: IdentityStore, settings: Settings, name: str, limit: int,
                      offset: int) -> dict[str, Any]:
    """A page of the identity's timeline, one item per run (newest first): `_run_out`. ``total`` counts
    the runs; only the runs of the page are read."""
    _ident, order = runs_of(repo, name)
    shown = order[offset: offset + limit]
    faces = _faces_by_run(store, shown, name)
    return {"items": [_run_out(run, entry, name, faces.get(run.run_id, []))
                      for run, entry in _entries(repo, settings, name, shown)],
            "total": len(order), "limit": limit, "offset": offset}


def identity_summary(repo: Repository, store: IdentityStore, settings: Settings, name: str) -> dict[str, Any]:
    """Visits, dwell per zone, crossings, cameras, first/last seen and a timeline with faces: each
    run's entry of ``report.json`` (``results.identities[name]``) and their sums (the newest
    ``MAX_RUNS`` runs; `identity_timeline` pages through all of them)."""
    ident, order = runs_of(repo, name)
    entries = _entries(repo, settings, name, order[:MAX_RUNS])
    faces = _faces_by_run(store, [run.run_id for run, _ in entries], name)
    zones: dict[str, dict[str, Any]] = {}
    lines: dict[str, dict[str, int]] = {}
    totals: dict[str, Any] = {"visits": 0, "dwell_s": 0.0, "crossings": {"in": 0, "out": 0}, "sightings": 0,
                              "seen_s": 0.0, "tracks": 0}
    first: datetime | None = None
    last: datetime | None = None
    cameras: set[str] = set()
    for run, entry in entries:
        cameras.add(run.camera_id)
        totals["visits"] += int(entry["visits"])
        totals["dwell_s"] = round(float(totals["dwell_s"]) + float(entry["dwell_s"]), 3)
        totals["crossings"]["in"] += int(entry["crossings"]["in"])
        totals["crossings"]["out"] += int(entry["crossings"]["out"])
        totals["sightings"] += int(entry["sightings"])
        totals["seen_s"] = round(float(totals["seen_s"]) + float(entry["seen_s"]), 3)
        totals["tracks"] += len(entry["tracks"])
        for zone, z in entry["zones"].items():
            _merge_zone(zones.setdefault(zone, {}), z)
        for line, c in entry["lines"].items():
            acc = lines.setdefault(line, {"in": 0, "out": 0})
            acc["in"] += int(c["in"])
            acc["out"] += int(c["out"])
        f_at, l_at = wall_time(run.started_at, entry["first_seen"]), wall_time(run.started_at, entry["last_seen"])
        first = f_at if first is None or (f_at is not None and f_at < first) else first
        last = l_at if last is None or (l_at is not None and l_at > last) else last
    return {"name": name, "photos": ident.photos, "enrolled_at": ident.created_at, "cameras": sorted(cameras),
            "first_seen": first, "last_seen": last, **totals, "zones": dict(sorted(zones.items())),
            "lines": dict(sorted(lines.items())),
            "runs": [_run_out(run, entry, name, faces.get(run.run_id, [])) for run, entry in entries],
            "runs_total": len(order)}


# -- live updates ---------------------------------------------------------------------------------


def console_state(repo: Repository, settings: Settings) -> dict[str, Any]:
    """What the console's lists, tiles and counters are made of, small enough to compare every second:
    the sizes of the lists (identities, unknown groups, stored faces, the newest audit entry) and each
    camera's live counters (`genesis.api.services.frames.live_counts`)."""
    from genesis.adapters.db.identities import read_transaction
    from genesis.api.services import frames, pipeline

    with read_transaction(repo.engine) as rows:
        counts = rows.counts()
    cameras = {str(c["id"]): frames.live_counts(repo, str(c["id"])) for c in pipeline.cameras(repo, settings)}
    return {**counts, "cameras": cameras}


# -- live view ------------------------------------------------------------------------------------


_marked: dict[str, float] = {}
_redis_down_until = [0.0]
REDIS_RETRY_S = 10.0
"""After Redis failed to answer, the live view reads only the database for this long."""


def live_frame(repo: Repository, redis_client: Any, settings: Settings, camera: str) -> dict[str, Any]:
    """The camera's newest live frame (JSON + the JPEG as a data URL) and "someone is watching" set.

    The flag is written at most every third of ``live_watch_s`` per camera (the browser polls twice a
    second, the database should not be written that often)."""
    import time

    watch_s = settings.console.live_watch_s
    now = time.monotonic()
    if now < _redis_down_until[0]:
        redis_client = None
    elif redis_client is not None:
        try:
            redis_client.ping()
        except Exception:
            _redis_down_until[0] = now + REDIS_RETRY_S
            redis_client = None
    if now - _marked.get(camera, -1e9) >= watch_s / 3:
        _marked[camera] = now
        mark_watched(camera, watch_s, repo.engine, redis_client)
    latest: LiveImage | None = read_latest(camera, repo.engine, redis_client)
    if latest is None:
        return {"camera_id": camera, "available": False, "stale": True, "at": None, "age_s": None, "frame": None,
                "image": None}
    age = (datetime.now(UTC) - latest.at).total_seconds()
    stale = age > settings.console.live_stale_s or not latest.jpeg
    image = None if stale else "data:image/jpeg;base64," + base64.b64encode(latest.jpeg).decode("ascii")
    return {"camera_id": camera, "available": True, "stale": stale, "at": latest.at, "age_s": round(age, 3),
            "frame": latest.meta, "image": image}
