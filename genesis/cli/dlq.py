"""``genesis dlq``: list, show, replay and purge dead letters (tasks that failed for good).

Registered on the main CLI as ``genesis dlq``; also runnable alone as ``python -m genesis.cli.dlq``.
The helpers of :mod:`genesis.cli.main` (``settings_from``, ``fail``, ``console``) are imported when a
command runs, not at import, so the two modules can import each other in any order (including
``python -m genesis.cli.main``, which loads genesis/cli/main.py a second time under its real name).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from genesis.cli.common import ConfigOpt, cells, fail, settings_from

if TYPE_CHECKING:
    from celery import Celery

    from genesis.adapters.dlq import DeadLetter, DeadLetters
    from genesis.config import Settings

SHORT_ID = 8

dlq_app = typer.Typer(
    help="Dead letters: tasks that failed for good (retries exhausted or bad input). List, show, replay, purge.",
    no_args_is_help=True,
)





def _warn(message: str) -> None:
    from genesis.cli.common import err_console

    err_console.print(f"[yellow]skipped[/] {message}", highlight=False, soft_wrap=True)


def _print(*objects: object, **kwargs: Any) -> None:
    from genesis.cli.common import console

    console.print(*objects, **kwargs)


@contextmanager
def _store(settings: Settings) -> Iterator[DeadLetters]:
    """The dead-letter store, with a clear error when Redis cannot be reached."""
    import redis

    from genesis.adapters.dlq import DeadLetters

    store = DeadLetters.from_settings(settings)
    try:
        yield store
    except redis.exceptions.ConnectionError as exc:
        fail(f"cannot reach Redis at {settings.redis_url}: {exc}")
    except redis.exceptions.RedisError as exc:
        fail(f"Redis error at {settings.redis_url}: {exc}")
    finally:
        store.redis.close()


def _resolve(store: DeadLetters, letter_id: str) -> DeadLetter:
    """The letter with this id, or the only one whose id starts with it."""
    ids = store.find(letter_id)
    if not ids:
        fail(f"no dead letter {letter_id!r}: see `genesis dlq list`")
    if len(ids) > 1:
        fail(f"{letter_id!r} matches several dead letters: give more of the id")
    letter = store.get(ids[0])
    if letter is None:
        fail(f"dead letter {ids[0]} was just removed")
    return letter


def _when(letter: DeadLetter) -> str:
    return letter.failed_at.strftime("%Y-%m-%d %H:%M:%S")


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dlq_app.command("list")
def list_letters(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most this many letters.")] = 50,
    newest: Annotated[bool, typer.Option("--newest", help="Newest first (default: oldest first).")] = False,
    full_ids: Annotated[bool, typer.Option("--full-ids", help="Whole ids (default: the first 8 characters, "
                                           "which `show` and `replay` accept).")] = False,
    config: ConfigOpt = None,
) -> None:
    """List dead letters, oldest first."""
    settings = settings_from(config)
    with _store(settings) as store:
        total = store.size()
        letters = store.list(limit=limit, newest_first=newest)
    if not letters:
        _print("the dead-letter queue is empty")
        return
    t = Table(title=f"Dead letters ({len(letters)} of {total})")
    t.add_column("id", no_wrap=not full_ids, overflow="fold")
    t.add_column("task", overflow="fold", min_width=12)
    t.add_column("error", overflow="fold", min_width=16, ratio=1)
    t.add_column("retries", justify="right", no_wrap=True)
    t.add_column("failed at (UTC)", min_width=10)
    for letter in letters:
        shown_id = letter.id if full_ids else letter.id[:SHORT_ID]
        t.add_row(*cells(shown_id, letter.task_name or "?", _short(letter.error, 80), letter.retries, _when(letter)))
    _print(t)


@dlq_app.command("show")
def show(
    letter_id: Annotated[str, typer.Argument(metavar="ID", help="Letter id (or a unique prefix of it).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the letter as JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Everything about one dead letter: task, arguments, error and traceback."""
    settings = settings_from(config)
    with _store(settings) as store:
        letter = _resolve(store, letter_id)
    if as_json:
        _print(json.dumps(letter.to_dict(), indent=2, sort_keys=True), highlight=False, soft_wrap=True)
        return
    t = Table(title=f"Dead letter {letter.id}", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    first = letter.first_failed_at or letter.failed_at
    rows = [
        ("task", letter.task_name or "?"),
        ("task id", letter.task_id or "-"),
        ("queue", letter.queue or "-"),
        ("args", json.dumps(letter.args)),
        ("kwargs", json.dumps(letter.kwargs, sort_keys=True)),
        ("exception", letter.exc_type or "-"),
        ("message", letter.exc_message or "-"),
        ("retries", str(letter.retries)),
        ("first failed at", first.isoformat()),
        ("failed at", letter.failed_at.isoformat()),
        ("worker", letter.hostname or "-"),
        ("replayable", "yes" if letter.replayable else "no (the message could not be decoded)"),
    ]
    for name, value in rows:
        t.add_row(*cells(name, value))
    _print(t, highlight=False)
    if letter.body is not None:
        _print("[bold]raw message body[/]")
        _print(letter.body, highlight=False, markup=False, soft_wrap=True)
    if letter.traceback:
        _print("[bold]traceback[/]")
        _print(letter.traceback.rstrip(), highlight=False, markup=False, soft_wrap=True)


def _celery(settings: Settings) -> Celery:
    from genesis.tasks.celery_config import make_app

    return make_app(settings)


@dlq_app.command("replay")
def replay_cmd(
    letter_id: Annotated[
        str | None, typer.Argument(metavar="ID", help="Letter id (or a unique prefix of it).")
    ] = None,
    all_letters: Annotated[bool, typer.Option("--all", help="Replay every dead letter, oldest first.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Send dead letters' tasks again (same arguments, queue from the routing table) and remove them."""
    import kombu.exceptions

    from genesis.adapters.dlq import ReplayError
    from genesis.tasks.dispatch import replay, replay_queue

    if (letter_id is None) == (not all_letters):
        fail("give a letter ID or --all (not both)", 2)
    settings = settings_from(config)
    app = _celery(settings)
    default_queue = str(app.conf.task_default_queue or "detect")
    replayed, skipped = 0, 0
    with _store(settings) as store:
        targets = [_resolve(store, letter_id).id] if letter_id is not None else store.ids()
        if not targets:
            _print("the dead-letter queue is empty")
            return
        for target in targets:
            letter = store.get(target)
            if letter is None:
                skipped += 1
                continue
            try:
                new_id = replay(app, settings, letter, store)
            except ReplayError as exc:
                if letter_id is not None:
                    fail(str(exc))
                skipped += 1
                _warn(str(exc))
                continue
            except kombu.exceptions.OperationalError as exc:
                fail(f"cannot send to the broker at {settings.broker_url}: {exc} "
                      f"({replayed} replayed before the error)")
            replayed += 1
            _print(f"replayed {letter.id}: {letter.task_name} -> task {new_id} on queue "
                   f"{replay_queue(settings, letter, default_queue)}", highlight=False)
    if letter_id is None:
        _print(f"replayed {replayed} dead letter(s)" + (f", skipped {skipped}" if skipped else ""))


@dlq_app.command("purge")
def purge(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Delete every dead letter."""
    settings = settings_from(config)
    with _store(settings) as store:
        n = store.size()
        if n == 0:
            _print("the dead-letter queue is empty")
            return
        if not yes and not typer.confirm(f"Delete all {n} dead letter(s)? They cannot be replayed afterwards."):
            raise typer.Exit(1)
        removed = store.purge()
    _print(f"purged {removed} dead letter(s)")


if __name__ == "__main__":
    dlq_app()
