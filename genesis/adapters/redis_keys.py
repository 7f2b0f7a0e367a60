"""The Redis key scheme of Genesis, in one place (every module that reads or writes a key asks here).

Everything lives under ``genesis:``:

- ``genesis:frame:<camera>:<run>:<seq>``: the JPEG bytes of one captured frame (TTL
  ``distributed.frame_ttl_s``).
- ``genesis:run:<run>:*``: the distributed state of one run, used by capture, detect tasks and the
  per-camera sequencer (see :mod:`genesis.pipeline.sequencer`):

  - ``results``: sorted set of detect results by ``seq``;
  - ``state``: the sequencer's camera state (our own JSON codec, never pickle);
  - ``lock``: who holds the run's ordered stage;
  - ``end``: the capture's end-of-stream summary (``last_seq``, frames, stride, fps ...);
  - ``done``: set once the run is finished;
  - ``wake``, ``kick``, ``gapcheck``: at most one pending sequence task of each kind;
  - ``sent:<seq>``: the detect message whose last frame is ``seq``, as the capture published it
    (TTL ``distributed.frame_ttl_s``, like the frames): the sequencer sends it again when its
    frames are missing (a message lost with a broken broker connection).

  Every one of them carries a TTL (:data:`RUN_TTL_S` unless said otherwise), refreshed while the
  run makes progress, so the keys of a run nobody finishes expire by themselves.
  ``capture`` and ``progress`` (heartbeats of a live run) and ``mqtt`` (what its MQTT events
  announced) belong to the run too.
- ``genesis:camera:<camera>:snapshot``: when the camera's heatmap background was last stored.
- ``genesis:admission:<window>:tried|admitted``: per camera, the detect messages its capture tried to
  publish and published near the site's backlog cap, per window (:mod:`genesis.pipeline.admission`).
- ``genesis:live:<camera>:frame|watch|gate|last``: the live view.
- ``genesis:worker:<host>:alive``, ``genesis:held:<tag>``, ``genesis:reaper:runs``: worker
  heartbeats, who holds which broker message, the abandoned-run reaper's turn.
- ``genesis:gallery:version``: the version of the enrolled gallery (workers reload on change).
- ``genesis:dlq:*``: the dead letters (see :mod:`genesis.adapters.dlq`).
- ``genesis:bench:*``: latency stamps of the distributed benchmark (never seen by ``drain``).
"""

from __future__ import annotations

PREFIX = "genesis:"

RUN_TTL_S = 7 * 24 * 3600
"""How long a run's keys live after the last time the run made progress (a week: far beyond any
gap, lock or retry, so only the keys of an abandoned run ever expire)."""


def glob_escape(text: str) -> str:
    """``text`` with Redis glob characters escaped (for SCAN MATCH patterns built from user input)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# -- frames ------------------------------------------------------------------------------------


def frame_key(camera_id: str, run_id: str, seq: int) -> str:
    return f"{PREFIX}frame:{camera_id}:{run_id}:{seq}"


def frame_pattern(camera_id: str, run_id: str) -> str:
    """SCAN pattern of every frame of one run of a camera."""
    return f"{PREFIX}frame:{glob_escape(camera_id)}:{glob_escape(run_id)}:*"


# -- runs --------------------------------------------------------------------------------------


def run_key(run_id: str, part: str) -> str:
    return f"{PREFIX}run:{run_id}:{part}"


def results_key(run_id: str) -> str:
    return run_key(run_id, "results")


def state_key(run_id: str) -> str:
    return run_key(run_id, "state")


def lock_key(run_id: str) -> str:
    return run_key(run_id, "lock")


def end_key(run_id: str) -> str:
    return run_key(run_id, "end")


def done_key(run_id: str) -> str:
    return run_key(run_id, "done")


def gap_check_key(run_id: str) -> str:
    return run_key(run_id, "gapcheck")


def kick_key(run_id: str) -> str:
    return run_key(run_id, "kick")


def wake_key(run_id: str) -> str:
    """Set while a sequence task is on its way for the run (detect tasks send one only if unset)."""
    return run_key(run_id, "wake")


def sent_key(run_id: str, seq: int) -> str:
    """The detect message of a run whose last frame is ``seq``, as published (see the module doc)."""
    return run_key(run_id, f"sent:{seq}")


def run_pattern(run_id: str) -> str:
    """SCAN pattern of every key of one run."""
    return f"{PREFIX}run:{glob_escape(run_id)}:*"


def capture_key(run_id: str) -> str:
    """Refreshed by a running capture (TTL ``run_stale_after_s``)."""
    return run_key(run_id, "capture")


def progress_key(run_id: str) -> str:
    """Refreshed by the detect and sequence tasks of the run (TTL ``run_stale_after_s``)."""
    return run_key(run_id, "progress")


def mqtt_memory_key(run_id: str) -> str:
    """What a run's MQTT events announced so far (``EventMemory``, distributed mode)."""
    return run_key(run_id, "mqtt")


RESULTS_PATTERN = f"{PREFIX}run:*:results"
"""SCAN pattern of every run's results set."""


def run_id_of(key: str | bytes) -> str:
    """The run id in a ``genesis:run:<run>:<part>`` key."""
    text = key.decode() if isinstance(key, bytes) else key
    return text[len(PREFIX + "run:"):].rsplit(":", 1)[0]


# -- cameras, gallery ----------------------------------------------------------------------------


def snapshot_key(camera_id: str) -> str:
    return f"{PREFIX}camera:{camera_id}:snapshot"


GALLERY_VERSION_KEY = f"{PREFIX}gallery:version"


def live_frame_key(camera_id: str) -> str:
    """The camera's latest annotated frame for the live view (short TTL)."""
    return f"{PREFIX}live:{camera_id}:frame"


def live_watch_key(camera_id: str) -> str:
    """Set while someone watches the camera's live view."""
    return f"{PREFIX}live:{camera_id}:watch"


def live_gate_key(camera_id: str) -> str:
    """At most one live frame per interval, whichever worker offers it."""
    return f"{PREFIX}live:{camera_id}:gate"


LIVE_FRAME_PATTERN = f"{PREFIX}live:*:frame"
"""SCAN pattern of every camera's live frame (``forget`` deletes them)."""


def live_last_key(camera_id: str) -> str:
    """When the camera's last live frame was published (outlives the frame: "no frame since ...")."""
    return f"{PREFIX}live:{camera_id}:last"


def admission_key(window: int, what: str) -> str:
    """The hash of the live cameras' tries (``what`` "tried") or admissions ("admitted") in one window."""
    return f"{PREFIX}admission:{window}:{what}"


# -- workers -----------------------------------------------------------------------------------


def worker_key(hostname: str) -> str:
    """A worker's heartbeat (TTL: a few heartbeats)."""
    return f"{PREFIX}worker:{hostname}:alive"


def holder_key(tag: str) -> str:
    """Which worker holds the broker message with this delivery tag."""
    return f"{PREFIX}held:{tag}"


def restoring_key(tag: str) -> str:
    """Claimed (briefly) by the one living worker that puts a dead worker's message back."""
    return f"{PREFIX}restoring:{tag}"


def queue_done_key(queue: str, second: int) -> str:
    """How many tasks taken from ``queue`` finished in this second (unix time; a short TTL): the queue's drain
    rate, which the capture turns into a backlog in seconds (genesis.adapters.broker.drain_rate)."""
    return f"{PREFIX}queue:{queue}:done:{second}"


REAPER_RUNS_KEY = f"{PREFIX}reaper:runs"
"""Set while one worker's heartbeat looks for abandoned runs (one look per period for all)."""

# -- dead letters ------------------------------------------------------------------------------

DLQ_PREFIX = f"{PREFIX}dlq:"
DLQ_INDEX_KEY = DLQ_PREFIX + "index"
DLQ_LETTER_PREFIX = DLQ_PREFIX + "letter:"
DLQ_FIRST_FAILURE_PREFIX = DLQ_PREFIX + "first:"
DLQ_REPLAY_LOCK_PREFIX = DLQ_PREFIX + "replaying:"

# -- benchmarks --------------------------------------------------------------------------------

BENCH_PREFIX = f"{PREFIX}bench:"
