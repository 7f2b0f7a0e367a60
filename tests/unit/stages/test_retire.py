"""A live camera's run keeps only its recent tracks: a track not seen for ``RETIRE_S`` of media time leaves the
camera's state, its records handed to the sink then (genesis.stages.camera.CameraState.take_retired), and the
stored tracks are those of a run that kept them all. Before, a live camera's state kept every track of the run:
4 MB after 19 minutes of a soak, saved to Redis at every batch and growing for as long as the camera ran."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from genesis.config import CameraConfig, Settings, load_settings
from genesis.domain import Detection, FrameDetections, FrameOutcome, FrameRef, TrackRecord, ZoneEvent
from genesis.pipeline.loop import BaseSink, RunLoop, RunProgress, RunState
from genesis.pipeline.sequencer import dumps_state, restore_state
from genesis.stages import camera as camera_mod
from genesis.stages.camera import RETIRE_S, CameraState
from genesis.stages.recognize import TrackRecognizer

W, H, FPS = 640, 360, 2.0
CAMERA = CameraConfig.model_validate({"id": "street"})


class Kept(BaseSink):
    def __init__(self) -> None:
        self.retired: list[list[TrackRecord]] = []
        self.final: list[TrackRecord] = []
        self.rows = 0

    def on_batch(self, outcomes: Sequence[FrameOutcome], closing: Sequence[ZoneEvent]) -> None:
        self.rows += sum(len(o.points) for o in outcomes)

    def on_tracks_retired(self, camera: CameraState, retired: TrackRecognizer) -> None:
        assert not set(retired.track_ids()) & set(camera.recognizer.track_ids())  # let go of, not copied
        self.retired.append(camera.track_records(retired))

    def on_finish(self, camera: CameraState, progress: RunProgress) -> None:
        self.final = camera.track_records()


def walkers(seconds: float) -> list[FrameDetections]:
    """A person walks across the picture every 8 s, each for 12 s (one or two in view), at 2 frames a second."""
    out = []
    for seq in range(int(seconds * FPS)):
        ts = seq / FPS
        dets = []
        for k in range(int(ts // 8) + 1):
            t = ts - 8 * k
            if 0 <= t < 12:
                x = 20 + 45 * t + (k % 2) * 30
                y = 80 + (k % 3) * 60
                dets.append(Detection((x, y, x + 40, y + 120), 0.9))
        out.append(FrameDetections(FrameRef("street", seq, ts, f"k{seq}", W, H), tuple(dets)))
    return out


def run(settings: Settings, frames: list[FrameDetections]) -> tuple[Kept, CameraState]:
    state = RunState(CameraState(settings, CAMERA, W, H, FPS, None), RunProgress(1, FPS))
    sink = Kept()
    loop = RunLoop(state, sink, batch_frames=25)
    image = np.zeros((H, W, 3), np.uint8)
    for fd in frames:
        loop.feed(fd, image)
    loop.close()
    return sink, state.camera


@pytest.fixture()
def settings(tmp_path: object) -> Settings:
    return load_settings(environ={"GENESIS_DATABASE_URL": "sqlite://"})


def test_tracks_gone_for_retire_s_leave_the_state_and_are_stored_as_if_kept(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = walkers(600)  # ten minutes: about 75 people
    kept, state = run(settings, frames)
    retired = [t for group in kept.retired for t in group]
    assert len(kept.retired) >= 10 and retired  # handed on as the run went
    monkeypatch.setattr(camera_mod, "RETIRE_S", 1e9)  # the run that keeps every track to the end
    whole, whole_state = run(settings, frames)
    assert whole.retired == []
    assert sorted(retired + kept.final, key=lambda t: (t.track_id, t.segment)) == whole.final
    assert kept.rows == whole.rows
    # What the state holds at the end: the tracks of the last RETIRE_S (and the next check), not the run's.
    assert len(state.recognizer.track_ids()) <= (RETIRE_S + 30 + 12) / 8 + 2
    assert len(whole_state.recognizer.track_ids()) == len(whole.final) >= 70
    assert len(state.export_state().__repr__()) < len(whole_state.export_state().__repr__()) / 3


def test_a_saved_state_never_holds_a_retired_track_and_a_restored_one_retires_the_same(settings: Settings) -> None:
    """The distributed sequencer saves the state after each batch: the retired tracks are handed on before, so
    a state restored from Redis holds the same tracks as the one that went on, and retires the same later."""
    frames = walkers(400)
    state = RunState(CameraState(settings, CAMERA, W, H, FPS, None), RunProgress(1, FPS))
    sink = Kept()
    saved: list[str] = []
    loop = RunLoop(state, sink, batch_frames=25, checkpoint=lambda: saved.append(dumps_state(state)))
    image = np.zeros((H, W, 3), np.uint8)
    for fd in frames[:500]:
        loop.feed(fd, image)
    loop.flush()
    restored = RunState(CameraState(settings, CAMERA, W, H, FPS, None), RunProgress(1, FPS))
    restore_state(restored, saved[-1])
    assert restored.camera.recognizer.track_ids() == state.camera.recognizer.track_ids()
    other = Kept()
    loop_a, loop_b = RunLoop(state, sink, batch_frames=25), RunLoop(restored, other, batch_frames=25)
    before = len(sink.retired)
    for fd in frames[500:]:
        loop_a.feed(fd, image)
        loop_b.feed(fd, image)
    loop_a.close()
    loop_b.close()
    assert other.retired == sink.retired[before:] and other.retired and other.final == sink.final
