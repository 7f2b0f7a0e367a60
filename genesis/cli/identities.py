"""`genesis enroll`, `genesis identities ...`, `genesis eval faces`: enrollment, the gallery's
maintenance (rename, forget, re-embed, key rotation, audit log) and the identification evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from genesis.cli.common import ConfigOpt, cells, console, err_console, fail, safe, settings_from
from genesis.config import Settings

if TYPE_CHECKING:
    from genesis.backends.faces import Embedder, FaceDetector

identities_app = typer.Typer(help="Enrolled identities.", invoke_without_command=True)
eval_app = typer.Typer(help="Quality evaluations on labelled data.", no_args_is_help=True)

def _actor(settings: Settings) -> str:
    from genesis.identities.store import default_actor

    return settings.identities.actor or default_actor()


def _store(settings: Settings) -> Any:
    from genesis.adapters.db import Repository
    from genesis.identities.crypto import BiometricCipher, BiometricKeyError
    from genesis.identities.store import IdentityStore

    try:
        cipher = BiometricCipher.from_env()
    except BiometricKeyError as exc:
        fail(str(exc), 2)
    return IdentityStore(Repository(settings.database_url), cipher)


def _face_models(settings: Settings) -> tuple[FaceDetector, Embedder]:
    """The face detector and embedder of ``settings``; missing or bad weights end the command."""
    from genesis.backends.weights import WeightsError
    from genesis.pipeline.model_loader import load_face_models

    try:
        return load_face_models(settings)
    except WeightsError as exc:
        fail(str(exc))


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True)


def enroll_command(
    name: Annotated[str, typer.Argument(help="Identity name.")],
    photos: Annotated[list[Path], typer.Argument(help="Photos of the person, one face each.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Enroll even a face that matches another identity (audited).")] = False,
    config: ConfigOpt = None,
) -> None:
    """Enroll an identity from one or several photos (all photos or none)."""
    from genesis.adapters.db import Repository
    from genesis.backends.weights import WeightsError
    from genesis.identities.crypto import BiometricKeyError
    from genesis.identities.store import IdentityError, check_name
    from genesis.pipeline.model_loader import detector_label
    from genesis.services.enroll import EnrollError
    from genesis.services.enroll import enroll as do_enroll

    settings = settings_from(config)
    try:  # the name rule first: a refused name is refused for its name, before any model loads
        check_name(name)
    except IdentityError as exc:
        fail(str(exc))
    face_detector, embedder = _face_models(settings)
    try:
        with Repository(settings.database_url) as repo:
            res = do_enroll(repo, name, photos, face_detector, embedder, detector_label(settings),
                            settings.identities.quality, keep_crops=settings.identities.keep_crops,
                            actor=_actor(settings), threshold=settings.recognition.embedder.cosine_threshold,
                            force=force)
    except (EnrollError, WeightsError, IdentityError, BiometricKeyError) as exc:
        fail(str(exc))
    for w in res.warnings:
        err_console.print(f"[yellow]warning:[/] {safe(w)}", highlight=False, soft_wrap=True)
    console.print(f"enrolled [bold]{safe(res.name)}[/]: {res.photos} photo(s), {res.added} new embedding(s) "
                  f"\\[{settings.recognition.embedder.model}]", highlight=False)


@identities_app.callback()
def identities(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """List enrolled identities (and manage them with the subcommands)."""
    if ctx.invoked_subcommand is not None:
        return
    from genesis.adapters.db import Repository

    settings = settings_from(config)
    with Repository(settings.database_url) as repo:
        rows = repo.identities()
    if not rows:
        console.print("no identities enrolled: genesis enroll NAME PHOTO...")
        return
    t = Table(title="Identities")
    for col in ("id", "name", "photos", "models", "enrolled"):
        t.add_column(col)
    for r in rows:
        t.add_row(*cells(r.id, r.name, r.photos, ", ".join(r.models), r.created_at.strftime("%Y-%m-%d %H:%M")))
    console.print(t)


@identities_app.command("forget")
def identities_forget(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Erase an identity everywhere: embeddings, kept faces, negatives, its name on tracks."""
    from genesis.identities.store import IdentityError

    settings = settings_from(config)
    if not yes and not typer.confirm(f"Forget {safe(name)} and all their biometric data?"):
        raise typer.Exit(1)
    store = _store(settings)
    try:
        counts = store.forget(name, _actor(settings))
    except IdentityError as exc:
        fail(str(exc))
    finally:
        store.repo.close()
    console.print(f"forgot {safe(name)}: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()))


@identities_app.command("rename")
def identities_rename(old: str, new: str, config: ConfigOpt = None) -> None:
    """Rename an identity (its past tracks follow)."""
    from genesis.identities.store import IdentityError

    settings = settings_from(config)
    store = _store(settings)
    try:
        store.rename(old, new, _actor(settings))
    except IdentityError as exc:
        fail(str(exc))
    finally:
        store.repo.close()
    console.print(f"renamed {safe(old)} to {safe(new.strip())}", highlight=False)


@identities_app.command("re-embed")
def identities_reembed(
    model: Annotated[
        str | None, typer.Option("--model", help="SFace, Dlib, ArcFace or Facenet512 (default: the configured one).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Recompute every enrolled embedding with a model, from the kept face crops."""
    from genesis.backends.faces import build_embedder
    from genesis.backends.weights import WeightsError
    from genesis.config import EmbedderConfig
    from genesis.identities.crypto import BiometricKeyError
    from genesis.services.enroll import EnrollError
    from genesis.services.reembed import re_embed

    settings = settings_from(config)
    try:
        cfg = settings.recognition.embedder if model is None or model == settings.recognition.embedder.model \
            else EmbedderConfig(model=model)  # type: ignore[arg-type]
    except ValueError:
        fail(f"--model must be one of SFace, Dlib, ArcFace, Facenet512, got {model!r}", 2)
    store = _store(settings)
    try:
        embedder = build_embedder(cfg, settings.models.path)
        with _progress() as bar:
            task = bar.add_task(f"re-embedding with {cfg.model}", total=None)
            res = re_embed(store, embedder, _actor(settings), lambda i, n: bar.update(task, completed=i, total=n))
    except (WeightsError, EnrollError, BiometricKeyError) as exc:
        fail(str(exc))
    finally:
        store.repo.close()
    console.print(f"re-embedded {res.embeddings} face(s) of {res.identities} identities with {res.model}")
    for ident, photo in res.without_crop:
        err_console.print(f"[yellow]warning:[/] {safe(ident)} ({safe(photo)}) has no kept face: enroll it again",
                          highlight=False)


@identities_app.command("new-key")
def identities_new_key() -> None:
    """Print a new key for GENESIS_EMBEDDING_KEY (keep it secret, keep it safe)."""
    from genesis.identities.crypto import BiometricCipher

    console.print(BiometricCipher.new_key(), highlight=False)


@identities_app.command("rotate-key")
def identities_rotate_key(config: ConfigOpt = None) -> None:
    """Re-encrypt all biometric data with the first key of GENESIS_EMBEDDING_KEY (NEW,OLD...)."""
    from genesis.identities.crypto import BiometricKeyError

    settings = settings_from(config)
    store = _store(settings)
    try:
        n = store.rotate_key(_actor(settings))
    except BiometricKeyError as exc:
        fail(str(exc))
    finally:
        store.repo.close()
    console.print(f"re-encrypted {n} blob(s) with the first key; the other keys can now be removed")


@identities_app.command("audit")
def identities_audit(
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N entries.")] = 50,
    config: ConfigOpt = None,
) -> None:
    """Show the audit log of biometric operations (enroll, search, rename, reject, forget ...)."""
    settings = settings_from(config)
    store = _store(settings)
    try:
        rows = store.audit_log()[-limit:]
    finally:
        store.repo.close()
    t = Table(title="Audit log")
    for col in ("id", "when (UTC)", "who", "action", "target", "detail"):
        t.add_column(col)
    for r in rows:
        detail = {k: v for k, v in r.detail.items() if k != "undo"}  # an undo's bookkeeping (embedding keys)
        t.add_row(*cells(str(r.id), r.at.strftime("%Y-%m-%d %H:%M:%S"), r.actor, r.action, r.target or "-",
                         json.dumps(detail, sort_keys=True)))
    console.print(t)


@identities_app.command("undo")
def identities_undo(
    entry: Annotated[int, typer.Argument(min=1, help="The audit entry of the review action (the id column of "
                                         "`genesis identities audit`).")],
    config: ConfigOpt = None,
) -> None:
    """Undo a review action (assign, reject, name, merge) by its audit entry: its audited inverse."""
    from genesis.identities import review
    from genesis.identities.crypto import BiometricKeyError

    settings = settings_from(config)
    store = _store(settings)
    try:
        done = review.undo(store, entry, _actor(settings))
    except (review.UndoError, BiometricKeyError) as exc:
        fail(str(exc))
    finally:
        store.repo.close()
    console.print(safe(done.message), highlight=False)


@eval_app.command("faces")
def eval_faces(
    root: Annotated[Path, typer.Argument(help="One folder per identity (or known/<name>/), plus unknown/ (group/).")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full report (every face) here.")] = None,
    model: Annotated[list[str], typer.Option(
        "--model", help="SFace, Dlib, ArcFace or Facenet512; repeatable (default: the configured model).")] = [],  # noqa: B006
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="Cosine distance threshold (default: the configured one, else deepface's).")] = None,
    margin: Annotated[float | None, typer.Option(
        "--margin", help="Best identity must beat the second by this (default: the model's).")] = None,
    extra: Annotated[list[str], typer.Option(
        "--extra", help="NAME=PHOTO[,PHOTO...]: enrollment photos of NAME (its folder is then all probes).")] = [],  # noqa: B006
    extra_probe: Annotated[list[str], typer.Option(
        "--extra-probe", help="NAME=PHOTO[,PHOTO...]: more probe photos of NAME.")] = [],  # noqa: B006
    config: ConfigOpt = None,
) -> None:
    """Enroll part of each identity's photos, identify the rest and the unknowns: top-1 accuracy,
    TAR at FAR 1%, unknown rejection and timings."""
    from genesis.backends.faces import build_embedder, build_face_detector
    from genesis.backends.weights import WeightsError
    from genesis.config import EmbedderConfig
    from genesis.config.inference import DEFAULT_COSINE_THRESHOLDS, DEFAULT_MARGINS
    from genesis.eval.faces import _parse_named_paths, evaluate_faces, format_report, format_table, load_dataset
    from genesis.services.enroll import EnrollError

    settings = settings_from(config)
    names = model or [settings.recognition.embedder.model]
    for m in names:
        if m not in DEFAULT_COSINE_THRESHOLDS:
            fail(f"--model must be one of {', '.join(sorted(DEFAULT_COSINE_THRESHOLDS))}, got {m!r}", 2)
    reports = []
    try:
        dataset = load_dataset(root, _parse_named_paths(extra), _parse_named_paths(extra_probe))
        face_detector = build_face_detector(settings.recognition.face_detector, settings.models.path)
        for m in names:
            configured = settings.recognition.embedder
            cfg = configured if configured.model == m else EmbedderConfig(model=m)  # type: ignore[arg-type]
            thr = threshold if threshold is not None else cfg.cosine_threshold
            mar = margin if margin is not None else (
                settings.recognition.match_margin if configured.model == m else DEFAULT_MARGINS[m])
            embedder = build_embedder(cfg, settings.models.path)
            with console.status(f"evaluating {m} on {root}..."):
                reports.append(evaluate_faces(dataset, face_detector, embedder, thr, mar))
    except (WeightsError, EnrollError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    for r in reports:
        console.print(format_report(r), highlight=False, soft_wrap=True)
        console.print()
    if len(reports) > 1:
        console.print(format_table(reports), highlight=False, soft_wrap=True)
    if json_out is not None:
        data: Any = reports[0].to_json() if len(reports) == 1 else {"models": {r.model: r.to_json() for r in reports}}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        console.print(f"wrote {json_out}")


@eval_app.command("video")
def eval_video(
    root: Annotated[Path, typer.Argument(help="One folder per identity (or known/<name>/) plus unknown/.")],
    background: Annotated[Path, typer.Option(
        "--background", help="The scene: an image, or a video (the median of frames spread over it).")],
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the figures (top level and per scenario, every policy under 'policies') here.")] = None,
    scenario: Annotated[list[str], typer.Option(
        "--scenario", help="doorway, crossing, occlusion, reentry, stranger, crowd; repeatable (default: all).")] = [],  # noqa: B006
    policy: Annotated[list[str], typer.Option(
        "--policy", help="segment (identity segments) or track (the old per-track policy); repeatable "
        "(default: both, side by side).")] = [],  # noqa: B006
    fps: Annotated[float, typer.Option("--fps", min=1.0, max=30.0, help="Frames per second of the sequences.")] = 5.0,
    size: Annotated[str, typer.Option("--size", help="WIDTHxHEIGHT of the sequences.")] = "640x360",
    keep_videos: Annotated[Path | None, typer.Option(
        "--keep-videos", help="Keep the generated sequences (mp4) in this folder.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Identity-labelled sequences built from photos, run through the real pipeline: are the names on
    the tracks right? identity precision and recall, wrong-name sightings, name switches, time to name."""
    from genesis.backends.weights import WeightsError
    from genesis.eval.video import (
        POLICIES,
        SCENARIOS,
        EvalVideoError,
        VideoEvalConfig,
        evaluate_video,
        format_table,
        json_report,
        write_json,
    )

    settings = settings_from(config)
    try:
        width, height = (int(v) for v in size.lower().split("x", 1))
    except ValueError:
        fail(f"--size must look like 640x360, got {size!r}", 2)
    if not (64 <= width <= 3840 and 64 <= height <= 2160):
        fail(f"--size must be between 64x64 and 3840x2160, got {size}", 2)
    scenarios = tuple(scenario) or SCENARIOS
    policies = tuple(policy) or POLICIES
    cfg = VideoEvalConfig(root, background, scenarios, policies, width, height, fps, keep_videos=keep_videos)
    try:
        with _progress() as bar:
            task = bar.add_task("eval video", total=len(scenarios) * len(policies))

            def step(what: str) -> None:
                bar.update(task, description=what)

            def done(_: str) -> None:
                bar.advance(task)

            result = evaluate_video(settings, cfg, progress=step, done=done)
    except (EvalVideoError, WeightsError) as exc:
        fail(str(exc))
    console.print(format_table(result), highlight=False, soft_wrap=True)
    if json_out is not None:
        write_json(json_out, json_report(result))
        console.print(f"wrote {json_out}")


@identities_app.command("unknowns")
def identities_unknowns(config: ConfigOpt = None) -> None:
    """List the unknown faces (clusters of unrecognised tracks across cameras and time)."""
    from genesis.identities.crypto import BiometricKeyError
    from genesis.identities.tracks import unknowns

    settings = settings_from(config)
    store = _store(settings)
    try:
        rows = unknowns(store)
    except BiometricKeyError as exc:
        fail(str(exc))
    finally:
        store.repo.close()
    if not rows:
        console.print("no unknown faces")
        return
    t = Table(title="Unknown faces")
    for col in ("id", "model", "tracks", "cameras", "first seen (UTC)", "last seen (UTC)"):
        t.add_column(col)
    for r in rows:
        t.add_row(*cells(r.label, r.model, r.tracks, ", ".join(r.cameras), r.first_seen.strftime("%Y-%m-%d %H:%M"),
                         r.last_seen.strftime("%Y-%m-%d %H:%M")))
    console.print(t)


@identities_app.command("name")
def identities_name(
    unknown: Annotated[str, typer.Argument(help="An unknown face id, e.g. unknown-17.")],
    name: Annotated[str, typer.Argument(help="The identity it becomes (new or existing).")],
    config: ConfigOpt = None,
) -> None:
    """Turn an unknown face into an identity: its faces become enrolled, its past tracks get the name."""
    from genesis.identities.crypto import BiometricKeyError
    from genesis.identities.store import IdentityError
    from genesis.identities.tracks import name_unknown

    settings = settings_from(config)
    store = _store(settings)
    try:
        n = name_unknown(store, unknown, name, _actor(settings))
    except (IdentityError, BiometricKeyError) as exc:
        fail(str(exc))
    finally:
        store.repo.close()
    console.print(f"{safe(unknown)} is now {safe(name.strip())}: {n} track(s) relabelled", highlight=False)


@identities_app.command("reject")
def identities_reject(
    track: Annotated[str, typer.Argument(help="RUN:TRACK or RUN:TRACK:SEGMENT (a run id or a unique prefix of it, "
                                         "the track id, the identity segment: a track cut between people has "
                                         "several; one with a single segment needs none).")],
    identity: Annotated[str | None, typer.Option(
        "--identity", help="The identity it is not (default: the one the segment was given).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Not this person, on one identity segment of a track: that segment loses its name and its face is
    never matched to that identity again; the track's other segments keep theirs. Audited; undo with
    `genesis identities undo ENTRY`."""
    from genesis.identities import review
    from genesis.identities.crypto import BiometricKeyError
    from genesis.identities.store import IdentityError
    from genesis.identities.tracks import resolve_run

    settings = settings_from(config)
    parts = track.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not all(p.isdigit() for p in parts[1:]):
        fail(f"give the track as RUN:TRACK or RUN:TRACK:SEGMENT (e.g. 3f2a:7 or 3f2a:7:1), got {track!r}", 2)
    tid, segment = int(parts[1]), (int(parts[2]) if len(parts) == 3 else None)
    store = _store(settings)
    try:
        run_id = resolve_run(store, parts[0])
        segment = review.one_segment(store, run_id, tid, segment)
        done = review.reject_segment(store, run_id, tid, segment, _actor(settings), identity)
    except (IdentityError, BiometricKeyError) as exc:
        fail(str(exc))
    finally:
        store.repo.close()
    console.print(f"{safe(done.message)}: unlinked, and that face will not match {safe(str(done.identity))} again "
                  f"(audit entry {done.entry}: `genesis identities undo {done.entry}` takes it back)", highlight=False)


@identities_app.command("purge")
def identities_purge(
    days: Annotated[int | None, typer.Option(
        "--days", min=1, help="Keep this many days (default: retention.unknown_faces_days).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Retention: delete unknown faces (clusters, faces of unknown tracks) older than the retention."""
    from genesis.identities.crypto import BiometricKeyError
    from genesis.identities.tracks import purge

    settings = settings_from(config)
    store = _store(settings)
    try:
        counts = purge(store, days or settings.retention.unknown_faces_days, _actor(settings))
    except BiometricKeyError as exc:
        fail(str(exc))
    finally:
        store.repo.close()
    console.print("purged " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()))


def search_command(
    photo: Annotated[Path, typer.Argument(help="A photo of the person (its largest face is searched).")],
    top: Annotated[int, typer.Option("--top", min=1, help="At most N tracks.")] = 20,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="Cosine distance (default: the model's recognition threshold).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Search by photo: the tracks of that face across cameras and time (nearest first)."""
    import hashlib

    from genesis.backends.weights import WeightsError
    from genesis.identities.crypto import BiometricKeyError
    from genesis.identities.tracks import search
    from genesis.services.enroll import EnrollError, read_image

    settings = settings_from(config)
    face_detector, embedder = _face_models(settings)
    try:
        image = read_image(photo)
        faces = face_detector.detect(image)
        if not faces:
            fail(f"{photo}: no face found")
        vector = embedder.embed(image, faces[:1])[0]
    except (EnrollError, WeightsError) as exc:
        fail(str(exc))
    store = _store(settings)
    try:
        hits = search(store, vector, embedder.model_name, top,
                      threshold if threshold is not None else settings.recognition.embedder.cosine_threshold,
                      _actor(settings), hashlib.sha256(photo.read_bytes()).hexdigest())
    except BiometricKeyError as exc:
        fail(str(exc))
    finally:
        store.repo.close()
    if not hits:
        console.print("no track of that face")
        return
    t = Table(title=f"Tracks of the face in {safe(photo.name)}")
    for col in ("run", "track", "camera", "time (s)", "distance", "identity"):
        t.add_column(col)
    for h in hits:
        t.add_row(*cells(h.run_id, h.track_id, h.camera_id, f"{h.ts:.1f}", f"{h.distance:.3f}",
                         h.identity or h.unknown or "unknown"))
    console.print(t)
