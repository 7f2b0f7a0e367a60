"""The base class of every pipeline task: late acks, bounded retries on transient errors, dead letters.

Declare tasks as ``@app.task(base=PipelineTask, name=routing.DETECT, bind=True)``. What a
``PipelineTask`` guarantees:

- **At least once.** ``acks_late``: the message is acknowledged after the task returns, so a
  worker that dies mid-task leaves it to be delivered again (the tasks are idempotent).
  ``reject_on_worker_lost`` requeues the message of a pool child that died; with
  ``retry_on_worker_lost`` that redelivery is a retry (after ``default_retry_delay``, 1 s) that
  counts against ``max_retries``, so a message that kills its worker every time (a poison
  message) ends in the dead-letter store instead of looping forever.
- **Transient errors are retried** (:data:`TRANSIENT_ERRORS`: Redis, database and broker
  connection errors and timeouts) with exponential backoff, each wait a random time between half
  and all of it (:func:`half_jitter`), at most ``settings.distributed.max_retries`` times, each
  wait at most ``settings.distributed.retry_backoff_max_s`` seconds: with the defaults a task
  outlasts an outage of 91 s at least (:meth:`DistributedConfig.retry_window_s`). These values are read from the
  settings of the app the task is registered on (``app.conf.genesis_settings``, set by
  :func:`genesis.celery.configure`) when the task is bound, i.e. when it is declared; a value
  passed to the decorator (``@app.task(..., max_retries=2)``) wins.
- **A retry survives the broker being away.** A retry is a new message; when the broker is
  the Redis that just failed, sending it fails too, and Celery would then drop the message
  (``Reject(requeue=False)``). Here the send is tried again, on a new connection (after a
  Redis restart the pooled one can stay broken), with backoff for up to
  :data:`RETRY_SEND_WAIT_S` (a Redis restart), then the task fails for good and is
  dead-lettered (its letter written once Redis is back, or logged) instead of vanishing.
- **Everything else fails fast**: :class:`PermanentError` (bad input that retrying cannot fix) and
  any other exception (a bug) are not retried.
- **Nothing that fails for good is lost**: it is recorded in the dead-letter store
  (:class:`genesis.adapters.dlq.DeadLetters`, in Redis) with task name, id, args, kwargs, queue,
  exception, traceback, retries and times, to be listed, replayed or purged with ``genesis dlq``.

What is dead-lettered, and how:

============================================== =================================================
failure                                         recorded by
============================================== =================================================
retries exhausted, PermanentError, other error  :meth:`PipelineTask.on_failure` (in the worker)
hard time limit, retries exhausted              :meth:`PipelineTask.on_failure` (Celery calls it);
                                                before that each time-out is a retry
                                                (:class:`PipelineRequest`)
worker lost more than ``max_retries`` times     ``task_failure`` signal (worker main process)
error outside the task body (e.g. bad body in   ``task_failure`` signal (worker main process)
the pool child)
unregistered task name                          ``task_unknown`` signal (consumer)
invalid message (no args, bad ETA, content type ``task_rejected`` signal (consumer)
not accepted, e.g. pickle)
body that is not valid JSON                     :class:`DeadLetterConsumer`, when the app sets
                                                ``worker_consumer`` to it
============================================== =================================================

Bad *arguments* (a message that decodes but whose values are wrong) are the task's to check:
wrap the parsing in :func:`bad_input` so it raises :class:`PermanentError` and the message is
dead-lettered at once. Not covered: a message whose broker envelope itself is not JSON (kombu
drops it before Celery sees it), a solo/threads worker process that dies (nobody is left to
record it: the living workers' heartbeats put its message back on the queue within
``worker_dead_after_s``, see genesis.pipeline.liveness) and a task revoked by an operator.
If Redis itself is down when a letter is written, the letter is logged (as JSON) instead.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any

import kombu.exceptions
import redis.exceptions
from celery import Celery, Task, signals
from celery.exceptions import NotRegistered, Reject, TimeLimitExceeded
from celery.utils.saferepr import saferepr as safe_repr
from celery.utils.serialization import UnpickleableExceptionWrapper
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer
from celery.worker.request import Request

from genesis.adapters.db.probe import DATABASE_AWAY_ERRORS
from genesis.adapters.dlq import DeadLetter, DeadLetters, utcnow
from genesis.config import DistributedConfig, Settings

log = logging.getLogger(__name__)


class PermanentError(Exception):
    """Bad input that retrying cannot fix (corrupt frame, undecodable message, bad arguments).

    The task fails at once, without a retry, and its message goes to the dead-letter store.
    """


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,  # Redis restarting, loading its AOF/RDB
    redis.exceptions.ReadOnlyError,  # writing to a replica during a failover
    # The database away; a schema error is an OperationalError too on SQLite and is retried in
    # vain, which costs max_retries attempts before the letter is written.
    *DATABASE_AWAY_ERRORS,
    kombu.exceptions.OperationalError,  # publishing the next stage while the broker is away
    ConnectionError,
    TimeoutError,  # socket.timeout too
)
"""Exception types worth retrying: the service will likely be back soon."""


@contextmanager
def bad_input(what: str, *types: type[Exception]) -> Iterator[None]:
    """Turn errors raised while parsing task arguments into :class:`PermanentError`.

    ``with bad_input("frame ref"): ref = FrameRef.from_dict(raw)`` — a malformed argument is
    dead-lettered at once instead of being retried or failing as if it were a bug. ``types``
    defaults to ``KeyError, TypeError, ValueError`` (pydantic's ValidationError is a ValueError).
    """
    catch = types or (KeyError, TypeError, ValueError)
    try:
        yield
    except PermanentError:
        raise
    except catch as exc:
        raise PermanentError(f"bad {what}: {type(exc).__name__}: {exc}") from exc


def _distributed(app: Celery | None) -> DistributedConfig:
    settings = app.conf.get("genesis_settings") if app is not None else None
    if isinstance(settings, Settings):
        return settings.distributed
    # An app not configured by genesis.celery.configure (e.g. Celery's default app binding the
    # abstract base class): the defaults keep the class usable.
    return DistributedConfig()


RETRY_SEND_WAIT_S = 120.0
"""How long a task waits for the broker to take its retry before it fails for good."""


def half_jitter(backoff_s: float) -> float:
    """A random wait between half of ``backoff_s`` and all of it ("equal jitter"): retries of many
    tasks spread out, and a task's retries still add up to at least half their backoff."""
    return backoff_s / 2 + random.uniform(0, backoff_s / 2)


class PipelineRequest(Request):  # type: ignore[misc]
    """A pipeline task's request in the worker's main process: a task stopped by its hard time limit
    (``distributed.task_time_limit_s``; the pool child that ran it is killed) is sent again at once, as a
    retry with twice the limit, before its message is acknowledged: a hung pool child gives its message
    back within the limit instead of holding it until the visibility timeout, and a task that is only slow
    (models loading in a child's first task on a busy machine) gets more time on the next try. Retries
    exhausted (``max_retries``, shared with the transient errors' retries), or the retry not sent: Celery's
    handling, i.e. the dead letter of :meth:`PipelineTask.on_failure`."""

    _sent_again = False

    def acknowledge(self) -> None:
        """Acknowledge the message, then delete its holder record (genesis.pipeline.liveness.note_holder)."""
        super().acknowledge()
        tag = getattr(self.message, "delivery_tag", None)
        url = str(self.task.app.conf.broker_url or "")
        if tag and url.startswith(("redis://", "rediss://")):
            from genesis.adapters.broker import broker_client
            from genesis.pipeline.liveness import forget_holder

            try:
                forget_holder(broker_client(url), str(tag))
            except redis.exceptions.RedisError:  # it expires on its own
                log.debug("holder record of %s not deleted", tag, exc_info=True)

    def _send_again(self, exc: BaseException) -> bool:
        """Send this timed-out task again and acknowledge its message; False when it cannot be (then the
        caller goes on with Celery's failure handling)."""
        if self._sent_again:
            return True
        task, request = self.task, self._context
        if not task.acks_late or worker_state.should_terminate:
            return False
        if task.max_retries is not None and request.retries >= task.max_retries:
            return False
        limit = (self.time_limits[0] or task.time_limit or 0) * 2 or None
        try:
            task.signature_from_request(request, retries=request.retries + 1, time_limit=limit).apply_async()
        except Exception:  # the broker away: Celery's handling (ack and dead letter) keeps it on record
            log.exception("%s[%s] passed its time limit and could not be sent again", self.task_name, self.id)
            return False
        self._sent_again = True
        worker_state.task_ready(self)
        self.acknowledge()
        self.send_event("task-retried", exception=safe_repr(exc), traceback="")
        log.warning("%s[%s] passed its time limit (%s): its pool child was stopped; sent again as retry %d "
                    "with a limit of %s s", self.task_name, self.id, exc, request.retries + 1, limit)
        return True

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> None:
        exc = getattr(exc_info, "exception", None)
        exc = getattr(exc, "exc", exc)  # ExceptionWithTraceback
        if isinstance(exc, TimeLimitExceeded) and self._send_again(exc):
            return
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft and self._send_again(TimeLimitExceeded(timeout)):
            return
        super().on_timeout(soft, timeout)


class PipelineTask(Task):  # type: ignore[misc]
    """Base class of the pipeline tasks (see the module docstring for what it guarantees)."""

    Request = PipelineRequest

    acks_late = True
    reject_on_worker_lost = True
    retry_on_worker_lost = True
    autoretry_for = TRANSIENT_ERRORS
    dont_autoretry_for = (PermanentError,)
    retry_backoff = True  # 1 s, 2 s, 4 s ... (factor 1), capped at retry_backoff_max
    # Not Celery's full jitter (a wait anywhere in [0, backoff]: five retries could all come within
    # a few seconds and a 20 s database restart would dead-letter them): retry() applies
    # half_jitter, so the retries of a task outlast an outage of half their total backoff at least.
    retry_jitter = False
    # Replaced from the app's settings in on_bound; these are the settings' defaults.
    max_retries: int | None = DistributedConfig().max_retries
    retry_backoff_max: int = DistributedConfig().retry_backoff_max_s
    # The wait before a worker-lost retry (and a bare ``self.retry()``): short, so a task whose
    # pool child died runs again about as soon as a plain requeue would (the per-camera
    # sequencer skips a frame missing for gap_timeout_s), yet counted against max_retries.
    default_retry_delay: int = 1

    _settings_applied: frozenset[str] = frozenset()

    @classmethod
    def on_bound(cls, app: Celery) -> None:
        """Read the retry bounds from the app's settings.

        Celery binds a task class to its app while declaring it, before it reads the
        autoretry options (``Celery._task_from_fun``: ``task.bind(app)`` then
        ``add_autoretry_behaviour(task)``), so the values set here are the ones it uses.
        A value given explicitly (decorator option, or a subclass attribute) is kept.
        """
        d = _distributed(app)
        values = {"max_retries": d.max_retries, "retry_backoff_max": d.retry_backoff_max_s}
        applied = set()
        for attr, value in values.items():
            if not cls._explicitly_set(attr):
                setattr(cls, attr, value)
                applied.add(attr)
        cls._settings_applied = frozenset(applied)

    @classmethod
    def _explicitly_set(cls, attr: str) -> bool:
        """Whether a class between this one and PipelineTask defines ``attr`` (not from settings)."""
        for klass in cls.__mro__:
            if klass is PipelineTask:
                return False
            if attr in klass.__dict__ and attr not in klass.__dict__.get("_settings_applied", ()):
                return True
        return False

    def retry(self, args: Any = None, kwargs: Any = None, exc: BaseException | None = None, throw: bool = True,
              eta: Any = None, countdown: float | None = None, max_retries: int | None = None,
              **options: Any) -> Any:
        """Celery's retry, except that a retry the broker cannot take yet is sent again (see above),
        and the countdown of a transient error's retry (the backoff) is jittered by :func:`half_jitter`."""
        if countdown is not None and isinstance(exc, TRANSIENT_ERRORS):
            countdown = half_jitter(countdown)
        deadline = time.monotonic() + RETRY_SEND_WAIT_S
        delay = 0.5
        fresh = False
        while True:
            try:
                if not fresh:
                    return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
                # After a failed send, on a new connection: the pooled one may be broken for good
                # (after a Redis restart kombu's channel can be closed under it: AttributeError).
                with self.app.connection_for_write() as conn:
                    return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, connection=conn,
                                         **options)
            except Reject as rejected:
                cause = rejected.reason
                if not isinstance(cause, TRANSIENT_ERRORS) and fresh:
                    raise
                if time.monotonic() + delay > deadline:
                    log.error("%s[%s]: the broker did not take the retry for %g s: %s", self.name,
                              self.request.id, RETRY_SEND_WAIT_S, cause)
                    raise (exc if exc is not None else cause) from cause
                log.warning("%s[%s]: retry not sent (%s: %s); again in %.1f s on a new connection", self.name,
                            self.request.id, type(cause).__name__, cause, delay)
                fresh = True
                time.sleep(delay)
                delay = min(delay * 2, 8.0)

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if self.request.retries == 0:
            store = dead_letters_for(self.app)
            if store is not None:
                try:
                    store.note_first_failure(task_id)
                except redis.exceptions.RedisError:
                    log.debug("could not note the first failure of %s[%s]", self.name, task_id)
        super().on_retry(exc, task_id, args, kwargs, einfo)

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        if self.request.retries:
            store = dead_letters_for(self.app)
            if store is not None:
                with suppress(redis.exceptions.RedisError):  # the marker expires on its own anyway
                    store.pop_first_failure(task_id)
        super().on_success(retval, task_id, args, kwargs)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """The task failed for good: retries exhausted, PermanentError or any other error."""
        record_task_failure(self, exc, task_id, args, kwargs, einfo)
        super().on_failure(exc, task_id, args, kwargs, einfo)


# -- recording ---------------------------------------------------------------------------------

_recorded = threading.local()  # task id of the last letter written by on_failure in this thread


@lru_cache(maxsize=8)
def _store(url: str) -> DeadLetters:
    return DeadLetters.from_url(url)


def dead_letters_for(app: Celery | None) -> DeadLetters | None:
    """The dead-letter store of an app configured by genesis.celery.configure (one per process)."""
    settings = app.conf.get("genesis_settings") if app is not None else None
    return _store(settings.redis_url) if isinstance(settings, Settings) else None


def describe_exception(exc: BaseException | None) -> tuple[str, str]:
    """``(qualified type name, message)``, seeing through Celery's exception wrappers."""
    if exc is None:
        return "", ""
    inner = getattr(exc, "exc", None)  # celery's ExceptionWithTraceback
    if isinstance(inner, BaseException):
        exc = inner
    if isinstance(exc, UnpickleableExceptionWrapper):
        return f"{exc.exc_module}.{exc.exc_cls_name}", str(exc.text or exc.exc_args)
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    if isinstance(exc, KeyError) and len(exc.args) == 1:  # str(KeyError("x")) is "'x'"
        return name, str(exc.args[0])
    return name, str(exc)


def store_letter(app: Celery | None, letter: DeadLetter) -> str | None:
    """Write a letter to the app's store; on any error log it (with its JSON) and return None."""
    try:
        store = dead_letters_for(app)
        if store is None:
            log.error("dead letter not recorded (the Celery app has no genesis settings): %s", letter.to_json())
            return None
        letter_id = store.add(letter)
    except Exception:
        log.exception("could not record dead letter %s", letter.to_json())
        return None
    log.warning("dead letter %s: %s[%s] failed for good (%d retries): %s", letter_id, letter.task_name,
                letter.task_id, letter.retries, letter.error)
    return letter_id


def record_task_failure(task: Task, exc: BaseException | None, task_id: str, args: Any, kwargs: Any,
                        einfo: Any) -> str | None:
    """Record a task that failed for good (from ``on_failure`` or the ``task_failure`` signal)."""
    try:
        req = task.request
        exc_type, exc_message = describe_exception(exc)
        delivery = getattr(req, "delivery_info", None) or {}
        store = dead_letters_for(task.app)
        first = None
        if store is not None:
            try:
                first = store.pop_first_failure(task_id)
            except redis.exceptions.RedisError:
                first = None
        letter = DeadLetter(
            task_name=task.name,
            task_id=task_id or "",
            args=list(args or []),
            kwargs=dict(kwargs or {}),
            queue=delivery.get("routing_key"),
            exc_type=exc_type,
            exc_message=exc_message,
            traceback=str(getattr(einfo, "traceback", "") or ""),
            retries=int(getattr(req, "retries", 0) or 0),
            failed_at=utcnow(),
            first_failed_at=first,
            hostname=getattr(req, "hostname", None),
        )
    except Exception:
        log.exception("could not build the dead letter of %s[%s]", getattr(task, "name", "?"), task_id)
        return None
    _recorded.task_id = task_id
    return store_letter(task.app, letter)


def _message_letter(message: Any, exc: BaseException | None, hostname: str | None,
                    name: str | None = None, task_id: str | None = None,
                    decodable: bool = True) -> DeadLetter:
    headers = getattr(message, "headers", None) or {}
    name = name or headers.get("task") or ""
    task_id = task_id or headers.get("id") or ""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    body: str | None = None
    try:
        if not decodable:
            raise ValueError("undecodable")
        payload = message.payload
        if isinstance(payload, (list, tuple)) and len(payload) == 3:  # protocol 2: (args, kwargs, embed)
            args, kwargs = list(payload[0]), dict(payload[1])
        elif isinstance(payload, dict):  # protocol 1
            args, kwargs = list(payload.get("args") or []), dict(payload.get("kwargs") or {})
            name = name or str(payload.get("task") or "")
            task_id = task_id or str(payload.get("id") or "")
        else:
            raise ValueError("unexpected payload")
    except Exception:
        raw = getattr(message, "body", b"")
        body = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
        args, kwargs = [], {}
    exc_type, exc_message = describe_exception(exc)
    delivery = getattr(message, "delivery_info", None) or {}
    return DeadLetter(task_name=str(name), task_id=str(task_id), args=args, kwargs=kwargs,
                      queue=delivery.get("routing_key"), exc_type=exc_type, exc_message=exc_message,
                      hostname=hostname, body=body)


def dead_letter_message(app: Celery | None, message: Any, exc: BaseException | None,
                        hostname: str | None = None, *, name: str | None = None, task_id: str | None = None,
                        decodable: bool = True) -> str | None:
    """Record a message the worker could not run at all (unknown task, invalid or undecodable).

    Args and kwargs are kept when the body decodes (so the letter can be replayed, e.g. once the
    missing task is deployed); otherwise the raw body is kept and the letter is not replayable.
    """
    try:
        letter = _message_letter(message, exc, hostname, name, task_id, decodable)
    except Exception:
        log.exception("could not build a dead letter for an undeliverable message")
        return None
    return store_letter(app, letter)


class DeadLetterConsumer(Consumer):  # type: ignore[misc]
    """Worker consumer that also dead-letters message bodies it cannot decode, and survives the
    loss of its broker connection while it holds messages.

    Celery logs and acknowledges an undecodable message and sends no signal; set
    ``app.conf.worker_consumer = "genesis.tasks.base:DeadLetterConsumer"`` to keep it.
    """

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        """The broker connection broke (Redis restarted). Celery closes it, and kombu's Redis
        channel then tries to give back every message it delivered and that is not acknowledged
        yet, through the connection just closed: an AttributeError that ends the worker
        ("Unrecoverable error"), and, when Redis answers, it would give back the running tasks'
        messages too. So the channels give back nothing here: the worker's heartbeat puts back
        exactly the messages it no longer has in hand (:func:`genesis.pipeline.liveness.lost_messages`)."""
        transport = getattr(self.connection, "transport", None)
        url = str(self.app.conf.broker_url or "")
        for channel in list(getattr(transport, "channels", None) or ()):
            channel.do_restore = False
            if url.startswith(("redis://", "rediss://")) and hasattr(channel, "unacked_key"):
                _settle_elsewhere(channel, _broker_client(url))
        super().on_connection_error_after_connected(exc)

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        dead_letter_message(self.app, message, PermanentError(f"message body cannot be decoded: {exc}"),
                            self.hostname, decodable=False)
        super().on_decode_error(message, exc)


@lru_cache(maxsize=4)
def _broker_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def _settle_elsewhere(channel: Any, client: redis.Redis) -> None:
    """Acknowledgements and rejections of the messages a broken channel delivered (the tasks still
    running when the connection broke) go through ``client``: on kombu's Redis transport they
    are a few commands on the ``unacked`` keys, and through the closed channel they raise an
    AttributeError that ends the worker. Should Redis still be away, the error is a connection
    error (logged by Celery), and the heartbeat puts the message back once it leaves the worker."""
    qos = channel.qos

    @contextmanager
    def pipe_or_acquire(pipe: Any = None, client_: Any = None) -> Iterator[Any]:
        yield pipe if pipe is not None else client.pipeline()

    def restore_by_tag(tag: Any, client_: Any = None, leftmost: bool = False) -> None:
        type(qos).restore_by_tag(qos, tag, client=client, leftmost=leftmost)

    qos.pipe_or_acquire = pipe_or_acquire
    qos.restore_by_tag = restore_by_tag


# -- signal hooks (connected on import: every task module imports this one) -------------------


def _on_task_failure(sender: Any = None, task_id: str | None = None, exception: BaseException | None = None,
                     args: Any = None, kwargs: Any = None, einfo: Any = None, **_: Any) -> None:
    """Failures that do not go through ``on_failure``: worker lost after its retries, errors
    raised outside the task body. Celery calls ``on_failure`` then this signal for an ordinary
    failure; the thread-local marker keeps that one from being written twice."""
    if not isinstance(sender, PipelineTask) or not task_id:
        return
    if getattr(_recorded, "task_id", None) == task_id:
        _recorded.task_id = None
        return
    record_task_failure(sender, exception, task_id, args, kwargs, einfo)


def _on_task_unknown(sender: Any = None, message: Any = None, exc: BaseException | None = None,
                     name: str | None = None, id: str | None = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    if dead_letters_for(app) is None:
        return
    dead_letter_message(app, message, NotRegistered(name), getattr(sender, "hostname", None),
                        name=name, task_id=id)


def _on_task_rejected(sender: Any = None, message: Any = None, exc: BaseException | None = None,
                      **_: Any) -> None:
    app = getattr(sender, "app", None)
    if dead_letters_for(app) is None:
        return
    reason = exc if exc is not None else PermanentError("message in an unknown format")
    dead_letter_message(app, message, reason, getattr(sender, "hostname", None))


signals.task_failure.connect(_on_task_failure, weak=False, dispatch_uid="genesis.tasks.base.task_failure")
signals.task_unknown.connect(_on_task_unknown, weak=False, dispatch_uid="genesis.tasks.base.task_unknown")
signals.task_rejected.connect(_on_task_rejected, weak=False, dispatch_uid="genesis.tasks.base.task_rejected")

__all__ = [
    "TRANSIENT_ERRORS",
    "DeadLetterConsumer",
    "PermanentError",
    "PipelineTask",
    "bad_input",
    "dead_letter_message",
    "dead_letters_for",
    "describe_exception",
    "record_task_failure",
]
