"""The per-camera sequencer on real Redis: any arrival order, gaps, and a holder that dies
midway all give the rows of an in-order run."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from genesis.adapters.redis_keys import end_key
from genesis.adapters.video import VideoSource
from genesis.backends.detectors import build_detector
from genesis.config import CameraConfig, LineConfig, Settings, ZoneConfig, load_settings
from genesis.config.alerts import CameraAlertsConfig
from genesis.domain import FrameDetections, FrameOutcome, FrameRef, ZoneEvent
from genesis.pipeline.loop import BaseSink, RunLoop, RunProgress, RunState
from genesis.pipeline.sequencer import FrameResult, Sequencer, SequencerState, push_result, run_meta_for_report
from genesis.stages.camera import CameraState
from tests.services import REDIS_ADDRESS, redis_url

REDIS_URL = redis_url(11)
W, H, FPS, STRIDE = 800, 450, 23.976, 3


@pytest.fixture()
def r() -> Iterator[Any]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not running on {REDIS_ADDRESS}: {exc}")
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="module")
def settings(models_dir: Path) -> Settings:
    return load_settings(environ={"GENESIS_MODELS_DIR": str(models_dir), "GENESIS_DISTRIBUTED__GAP_TIMEOUT_S": "20"})


CAMERA = CameraConfig(
    id="cam",
    zones=[ZoneConfig(name="left", points=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)], max_occupancy=1, restricted=True)],
    lines=[LineConfig(name="mid", start=(0.5, 0), end=(0.5, 1))],
    alerts=CameraAlertsConfig(loitering_s=2.0, clear_s=0.3, default_cooldown_s=1.0),
)


@pytest.fixture(scope="module")
def detections(settings: Settings, data_dir: Path) -> list[FrameDetections]:
    det = build_detector(settings.detector, settings.models.path)
    out = []
    with VideoSource(str(data_dir / "video" / "opencv4nodejs_people.mp4")) as video:
        for f in video.frames(stride=STRIDE, max_frames=40):
            ref = FrameRef("cam", f.seq, f.ts, f"k{f.seq}", W, H)
            out.append(FrameDetections(ref, tuple(det.detect(f.image))))
    return out


def reference(
    settings: Settings, dets: list[FrameDetections]
) -> tuple[list[FrameOutcome], list[ZoneEvent], dict[str, Any]]:
    """The in-order run: the run loop fed every frame in one process (as the embedded runner does)."""
    state = SequencerState(CameraState(settings, CAMERA, W, H, FPS, None, STRIDE), RunProgress(STRIDE, FPS))
    c = Collector()
    loop = RunLoop(state, c, batch_frames=10**6)
    outs = [loop.feed(fd, np.zeros((1, 1, 3), np.uint8)) for fd in dets]
    loop.close()
    return outs, c.closing, run_meta_for_report(state)


class Collector(BaseSink):
    """A sink that keeps the rows it is handed."""

    def __init__(self) -> None:
        self.rows: set[str] = set()
        self.closing: list[ZoneEvent] = []
        self.finished: list[SequencerState] = []

    def on_batch(self, outcomes: Sequence[FrameOutcome], closing: Sequence[ZoneEvent]) -> None:
        for o in outcomes:
            for row in [*o.sightings, *o.zone_events, *o.crossings, *o.attempts, *o.alerts, *o.samples]:
                self.rows.add(repr(row))
        for e in closing:
            self.rows.add(repr(e))
        self.closing += closing

    def on_finish(self, camera: CameraState, progress: RunProgress) -> None:
        self.finished.append(RunState(camera, progress))


def make(r: Any, settings: Settings, c: BaseSink, clock: Any = None, resend: Any = None) -> Sequencer:
    return Sequencer(
        redis=r, settings=settings, camera=CAMERA, run_id="run1",
        run_meta={"width": W, "height": H, "fps": FPS, "stride": STRIDE},
        faces=None, load_image=lambda ref: np.zeros((H, W, 3), np.uint8),
        sink=c, resend=resend, **({"clock": clock} if clock else {}),
    )


def expected_rows(settings: Settings, dets: list[FrameDetections]) -> tuple[set[str], dict[str, Any]]:
    outs, closing, meta = reference(settings, dets)
    c = Collector()
    c.on_batch(outs, closing)
    return c.rows, meta


def results(dets: list[FrameDetections]) -> list[FrameResult]:
    prev = -1
    out = []
    for fd in dets:
        out.append(FrameResult(fd.frame, prev, fd.detections))
        prev = fd.frame.seq
    return out


def end(r: Any, last_seq: int, published: int | None = None) -> None:
    """The capture's end marker (``published``: the frames it says it published)."""
    summary: dict[str, Any] = {"last_seq": last_seq}
    if published is not None:
        summary["frames"] = published
    r.set(end_key("run1"), json.dumps(summary))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_arrival_order_gives_the_in_order_rows(r: Any, settings: Settings, detections: list[FrameDetections],
                                                   seed: int) -> None:
    want, meta = expected_rows(settings, detections)
    items = results(detections)
    random.Random(seed).shuffle(items)
    c = Collector()
    end(r, detections[-1].frame.seq)
    for item in items:
        push_result(r, "run1", item)
        make(r, settings, c).run()
    assert len(c.finished) == 1
    assert c.rows == want
    assert run_meta_for_report(c.finished[0]) == meta


def test_a_holder_that_dies_midway_is_resumed(r: Any, settings: Settings, detections: list[FrameDetections]) -> None:
    want, _ = expected_rows(settings, detections)
    c = Collector()
    for item in results(detections):
        push_result(r, "run1", item)
    end(r, detections[-1].frame.seq)
    # The first holder stops after 7 frames (as if killed after its last saved batch)...
    make(r, settings, c).run(max_frames=7)
    r.delete("genesis:run:run1:lock")
    # ... and the next one picks up from the saved state.
    assert make(r, settings, c).run()
    assert c.rows == want and len(c.finished) == 1


def test_a_turn_lets_go_with_results_left_and_the_next_turns_finish_the_run(
        r: Any, settings: Settings, detections: list[FrameDetections]) -> None:
    """A holder whose results keep coming lets go at the end of its turn (the other cameras of a shared
    worker get theirs) and asks for another; the turns together give the one-pass rows."""
    want, meta = expected_rows(settings, detections)
    c = Collector()
    for item in results(detections):
        push_result(r, "run1", item)
    end(r, detections[-1].frame.seq)
    turns = 0
    while True:
        seq = make(r, settings, c)
        seq.turn_s = 0.0  # every turn ends after its first frame
        turns += 1
        if seq.run():
            break
        assert seq.more and not seq.busy, "a turn that let go with results left asks for another"
        assert turns <= len(detections)
    assert turns == len(detections)
    assert c.rows == want and len(c.finished) == 1
    assert run_meta_for_report(c.finished[0]) == meta


def test_the_frames_a_saved_state_covers_are_released(r: Any, settings: Settings,
                                                     detections: list[FrameDetections]) -> None:
    """Once the state that covers them is saved, the processed frames' keys go to ``release`` (the frame store
    drops their pixels): each once, none before its state is saved."""
    c = Collector()
    for item in results(detections[:20]):
        push_result(r, "run1", item)
    released: list[str] = []
    first = make(r, settings, c)
    first.release, first.turn_s = released.extend, 0.0
    assert not first.run() and first.more  # its turn ends after one frame, the state saved
    assert released == [detections[0].frame.key]
    for item in results(detections[20:]):
        push_result(r, "run1", item)
    end(r, detections[-1].frame.seq)
    second = make(r, settings, c)
    second.release = released.extend
    assert second.run()
    assert released == [d.frame.key for d in detections]


def test_a_duplicate_result_is_ignored(r: Any, settings: Settings, detections: list[FrameDetections]) -> None:
    want, _ = expected_rows(settings, detections[:10])
    c = Collector()
    end(r, detections[9].frame.seq)
    items = results(detections[:10])
    for item in [*items[:5], items[2], *items[5:], items[7]]:
        push_result(r, "run1", item)
        make(r, settings, c).run()
    assert c.rows == want and len(c.finished) == 1


def test_a_missing_frame_is_skipped_after_the_gap_timeout(r: Any, settings: Settings,
                                                          detections: list[FrameDetections]) -> None:
    now = [1000.0]
    c = Collector()
    items = results(detections[:10])
    lost = items.pop(4)
    end(r, detections[9].frame.seq)
    for item in items:
        push_result(r, "run1", item)
    seq = make(r, settings, c, clock=lambda: now[0])
    assert not seq.run() and seq.waiting_on_gap()  # waits for the lost frame
    now[0] += settings.distributed.gap_timeout_s + 1
    assert make(r, settings, c, clock=lambda: now[0]).run()
    state = c.finished[0].progress
    assert state.missing == 1 and state.frames == 9
    assert lost.frame.seq not in {int(x.split("seq=")[1].split(",")[0]) for x in c.rows if "seq=" in x}


def test_a_gap_of_several_frames_counts_each_missing_frame(r: Any, settings: Settings,
                                                           detections: list[FrameDetections]) -> None:
    """Three frames in a row never come: the chain only shows one gap, the capture's count of the
    frames it published says three are missing."""
    now = [1000.0]
    c = Collector()
    items = results(detections[:10])
    del items[3:6]
    end(r, detections[9].frame.seq, published=10)
    for item in items:
        push_result(r, "run1", item)
    assert not make(r, settings, c, clock=lambda: now[0]).run()
    now[0] += settings.distributed.gap_timeout_s + 1
    assert make(r, settings, c, clock=lambda: now[0]).run()
    state = c.finished[0].progress
    assert (state.frames, state.missing, state.skipped) == (7, 3, 0)


class Resender:
    """The sequencer's ``resend``: records each call; ``deliver`` (when set) is what the detect
    task of the message sent again pushes."""

    def __init__(self, r: Any, deliver: list[FrameResult] | None = None, queued_s: float = 0.0) -> None:
        self.r, self.deliver, self.calls, self.queued_s = r, deliver, [], queued_s

    def __call__(self, after_seq: int, missing_seq: int) -> float | None:
        self.calls.append((after_seq, missing_seq))
        for item in self.deliver or []:
            push_result(self.r, "run1", item)
        return self.queued_s


@pytest.mark.parametrize("where", ["middle", "end"])
def test_frames_whose_message_was_lost_are_sent_again_before_they_are_given_up(
        r: Any, settings: Settings, detections: list[FrameDetections], where: str) -> None:
    """The detect message of three frames was lost (in the middle of the run, or its last one:
    then no later frame shows the gap, only the capture's end marker). At the gap timeout the
    sequencer asks for it again, once, and waits once more: the run is complete."""
    now = [1000.0]
    c = Collector()
    items = results(detections[:10])
    cut = slice(3, 6) if where == "middle" else slice(7, 10)
    lost, kept = items[cut], items[:cut.start] + items[cut.stop:]
    end(r, detections[9].frame.seq, published=10)
    for item in kept:
        push_result(r, "run1", item)
    resend = Resender(r)
    assert not make(r, settings, c, lambda: now[0], resend).run() and not resend.calls
    now[0] += settings.distributed.gap_timeout_s + 1
    seq = make(r, settings, c, lambda: now[0], resend)
    assert not seq.run() and seq.waiting_on_gap()  # sent again, and waiting for it once more
    assert resend.calls == [(lost[0].prev_seq, lost[-1].frame.seq)]
    for item in lost:  # the detect task of the message sent again
        push_result(r, "run1", item)
    assert make(r, settings, c, lambda: now[0], resend).run()
    state = c.finished[0].progress
    assert (state.frames, state.missing, state.skipped) == (10, 0, 0)
    assert len(resend.calls) == 1
    assert c.rows == expected_rows(settings, detections[:10])[0]


@pytest.mark.parametrize("where", ["middle", "end"])
def test_frames_sent_again_in_vain_are_given_up_after_a_second_wait(
        r: Any, settings: Settings, detections: list[FrameDetections], where: str) -> None:
    """Sent again once only: if the frames still do not come (their message was not kept, or is
    lost again) they are given up and counted after a second gap timeout, and the run ends."""
    now = [1000.0]
    c = Collector()
    items = results(detections[:10])
    cut = slice(3, 6) if where == "middle" else slice(7, 10)
    del items[cut]
    end(r, detections[9].frame.seq, published=10)
    for item in items:
        push_result(r, "run1", item)
    resend = Resender(r)
    assert not make(r, settings, c, lambda: now[0], resend).run()
    now[0] += settings.distributed.gap_timeout_s + 1
    assert not make(r, settings, c, lambda: now[0], resend).run()
    now[0] += settings.distributed.gap_timeout_s - 2
    assert not make(r, settings, c, lambda: now[0], resend).run()  # still waiting
    now[0] += 3
    assert make(r, settings, c, lambda: now[0], resend).run()
    state = c.finished[0].progress
    assert (state.frames, state.missing, state.skipped) == (7, 3, 0)
    assert len(resend.calls) == 1


def test_frames_sent_again_behind_a_backlog_wait_for_it_before_they_are_given_up(
        r: Any, settings: Settings, detections: list[FrameDetections]) -> None:
    """An overloaded site: the messages sent again wait 100 s behind the detect backlog. The second wait starts
    when they are expected to leave the queue, so frames that were only slow are not given up (they were, on a
    starved machine, after twice the gap timeout); and they are, once that wait has passed too."""
    now = [1000.0]
    c = Collector()
    items = results(detections[:10])
    lost, kept = items[3:6], items[:3] + items[6:]
    end(r, detections[9].frame.seq, published=10)
    for item in kept:
        push_result(r, "run1", item)
    resend = Resender(r, queued_s=100.0)
    gap = settings.distributed.gap_timeout_s
    assert not make(r, settings, c, lambda: now[0], resend).run()
    now[0] += gap + 1
    seq = make(r, settings, c, lambda: now[0], resend)
    assert not seq.run() and resend.calls and seq.gap_due_in_s() == pytest.approx(100.0 + gap)
    now[0] += gap + 1  # where the second wait used to end
    seq = make(r, settings, c, lambda: now[0], resend)
    assert not seq.run() and seq.waiting_on_gap() and seq.gap_due_in_s() == pytest.approx(100.0 - 1)
    for item in lost:  # they leave the queue after 100 s
        push_result(r, "run1", item)
    assert make(r, settings, c, lambda: now[0], resend).run()
    assert (c.finished[0].progress.frames, c.finished[0].progress.missing) == (10, 0)

    r.flushdb()  # the same, and they never come: given up once the backlog's wait and the gap have passed
    c, now[0] = Collector(), 5000.0
    end(r, detections[9].frame.seq, published=10)
    for item in kept:
        push_result(r, "run1", item)
    resend = Resender(r, queued_s=100.0)
    assert not make(r, settings, c, lambda: now[0], resend).run()
    now[0] += gap + 1
    assert not make(r, settings, c, lambda: now[0], resend).run()
    now[0] += 100.0 + gap - 1
    assert not make(r, settings, c, lambda: now[0], resend).run()
    now[0] += 2
    assert make(r, settings, c, lambda: now[0], resend).run()
    assert (c.finished[0].progress.frames, c.finished[0].progress.missing) == (7, 3)
    assert len(resend.calls) == 1


def test_the_last_frames_never_coming_end_the_run_after_the_gap_timeout(
        r: Any, settings: Settings, detections: list[FrameDetections]) -> None:
    """Without a way to send them again, frames missing at the end of the stream are given up
    after the gap timeout (they used to leave the run waiting until it was taken for abandoned)."""
    now = [1000.0]
    c = Collector()
    items = results(detections[:10])[:8]
    end(r, detections[9].frame.seq, published=10)
    for item in items:
        push_result(r, "run1", item)
    seq = make(r, settings, c, clock=lambda: now[0])
    assert not seq.run() and seq.waiting_on_gap()
    now[0] += settings.distributed.gap_timeout_s + 1
    assert make(r, settings, c, clock=lambda: now[0]).run()
    state = c.finished[0].progress
    assert (state.frames, state.missing, state.skipped) == (8, 2, 0)


def test_a_holder_killed_before_saving_its_state_loses_no_frame(
    r: Any, settings: Settings, detections: list[FrameDetections]
) -> None:
    """The holder dies after processing frames but before saving the state that covers them: the
    next holder processes them again (their rows are sent twice, which the store absorbs)."""
    small = settings.model_copy(update={"distributed": settings.distributed.model_copy(
        update={"store_batch_frames": 5})})
    want, meta = expected_rows(small, detections)
    c = Collector()
    for item in results(detections):
        push_result(r, "run1", item)
    end(r, detections[-1].frame.seq)

    class Dying(BaseSink):
        calls = 0

        def on_batch(self, outcomes: Sequence[FrameOutcome], closing: Sequence[ZoneEvent]) -> None:
            self.calls += 1
            if self.calls == 3:
                raise SystemExit("killed")  # dies between sending rows and saving its state
            c.on_batch(outcomes, closing)

    seq = make(r, small, Dying())
    with pytest.raises(SystemExit):
        seq.run()
    assert make(r, small, c).run()
    assert c.rows == want and len(c.finished) == 1
    assert run_meta_for_report(c.finished[0]) == meta


def test_rows_include_alerts_and_a_new_state_is_prepared_once(
    r: Any, settings: Settings, detections: list[FrameDetections]
) -> None:
    want, _ = expected_rows(settings, detections)
    assert any("Alert(" in row for row in want), "the camera's rules must raise alerts in this clip"
    c = Collector()
    prepared: list[CameraState] = []

    def prepare(cam: CameraState) -> None:
        cam.alerts.prime({}, 1_700_000_000.0)
        prepared.append(cam)

    end(r, detections[-1].frame.seq)
    for item in results(detections):
        push_result(r, "run1", item)
        seq = make(r, settings, c)
        seq.prepare = prepare
        seq.run()
    assert c.rows == want and len(prepared) == 1  # later passes load the saved state
    assert c.finished[0].camera.alerts.time_origin == 1_700_000_000.0


def test_the_next_pass_in_the_process_takes_its_own_saved_state_unless_the_key_moved(
        r: Any, settings: Settings, detections: list[FrameDetections], monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass that saved the run's state keeps the object; the next pass of the run in the same process uses it
    instead of decoding the key, as long as the key holds that save. A save by another worker, a key gone (a Redis
    restart) or other face models make it decode the key. Passes of either kind give the one-pass rows."""
    from genesis.adapters.redis_keys import state_key
    from genesis.pipeline import sequencer as sequencer_module
    from genesis.stages.camera import FaceModels

    decoded: list[int] = []
    real_restore = sequencer_module.restore_state
    monkeypatch.setattr(sequencer_module, "restore_state",
                        lambda state, raw: (decoded.append(1), real_restore(state, raw))[1])
    want, meta = expected_rows(settings, detections)
    c = Collector()
    for item in results(detections):
        push_result(r, "run1", item)
    end(r, detections[-1].frame.seq)

    def one_frame() -> Sequencer:
        seq = make(r, settings, c)
        seq.turn_s = 0.0  # one frame a pass
        assert not seq.run() and seq.more
        return seq

    one_frame()
    assert decoded == []  # the first pass made a new state
    one_frame()
    one_frame()
    assert decoded == [], "the passes after it used the state object they saved"
    head = r.getrange(state_key("run1"), 0, sequencer_module.SAVE_PREFIX_LEN - 1)
    assert sequencer_module.saved_token(head) is not None

    # Another worker advanced the run: its save is in the key (the same JSON under another save token).
    raw = r.get(state_key("run1")).decode()
    r.set(state_key("run1"), '{"save":"' + "f" * 32 + raw[len('{"save":"') + 32:])
    one_frame()
    assert decoded == [1]
    one_frame()
    assert decoded == [1]

    # Other face models (the gallery was refreshed): the state is rebuilt with them.
    seq = make(r, settings, c)
    seq.faces, seq.turn_s = FaceModels(None, None, None), 0.0  # type: ignore[arg-type]
    monkeypatch.setattr(sequencer_module.Sequencer, "_new_state",
                        lambda self: SequencerState(CameraState(settings, CAMERA, W, H, FPS, None, STRIDE),
                                                    RunProgress(STRIDE, FPS)))
    assert not seq.run()
    assert decoded == [1, 1]

    while not make(r, settings, c).run():
        pass
    assert c.rows == want and len(c.finished) == 1
    assert run_meta_for_report(c.finished[0]) == meta


def test_a_saved_state_names_its_save_first_and_decodes_without_it(settings: Settings) -> None:
    from genesis.pipeline.sequencer import SAVE_PREFIX_LEN, dumps_state, restore_state, saved_token

    state = SequencerState(CameraState(settings, CAMERA, W, H, FPS, None, STRIDE), RunProgress(STRIDE, FPS))
    state.progress.frames = 7
    raw = dumps_state(state, "a" * 32)
    assert saved_token(raw[:SAVE_PREFIX_LEN]) == "a" * 32 and saved_token(raw.encode()) == "a" * 32
    assert json.loads(raw)["save"] == "a" * 32
    assert saved_token(dumps_state(state)) is None and saved_token(b"") is None and saved_token(None) is None
    back = SequencerState(CameraState(settings, CAMERA, W, H, FPS, None, STRIDE), RunProgress(STRIDE, FPS))
    restore_state(back, raw)
    assert back.progress.frames == 7 and dumps_state(back, "a" * 32) == raw
    with pytest.raises(ValueError):
        dumps_state(state, "short")
