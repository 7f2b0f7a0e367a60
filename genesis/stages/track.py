"""Track: ByteTrack (roboflow `trackers`) over one camera's ordered detections.

One tracker per camera (a tracker shared across streams mixes ids). Ids start at 1 for
each run of a camera and only confirmed tracks (seen ``minimum_consecutive_frames`` times)
get one; unconfirmed boxes are dropped here, so no later stage sees a track without an id.
The tracker is driven by frame timestamps, so a frame stride or a dropped frame ages lost
tracks by real time, not by call count.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genesis.config import TrackerConfig
from genesis.domain import FrameDetections, TrackedFrame, TrackedPerson
from genesis.domain.codec import CodecError, SavedState, decode, encode


@dataclass(slots=True)
class KalmanState:
    """One tracklet's Kalman filter (``trackers.utils.kalman_filter.KalmanFilter.get_state``)."""

    state: np.ndarray
    state_covariance: np.ndarray
    transition_mtx: np.ndarray
    observation_mtx: np.ndarray
    process_noise: np.ndarray
    measurement_noise: np.ndarray


@dataclass(slots=True)
class TrackletState:
    """One ByteTrack tracklet: its counters and its filter."""

    tracker_id: int
    age: int
    time_since_update: int
    time_since_update_seconds: float
    consecutive_updates: int
    kalman: KalmanState


@dataclass(slots=True)
class TrackerState:
    """Everything a ByteTrack tracker carries from one frame to the next (its settings aside)."""

    next_track_id: int
    last_timestamp: float | None
    tracks: list[TrackletState] = field(default_factory=list)


class CameraTracker(SavedState):
    def __init__(self, config: TrackerConfig, frame_rate: float) -> None:
        from trackers import ByteTrackTracker

        self._tracker = ByteTrackTracker(
            lost_track_buffer=config.lost_track_buffer,
            frame_rate=frame_rate,
            track_activation_threshold=config.track_activation_threshold,
            minimum_consecutive_frames=config.minimum_consecutive_frames,
            minimum_iou_threshold=config.minimum_iou_threshold,
            high_conf_det_threshold=config.high_conf_det_threshold,
        )
        self.lost_after_s = config.lost_track_buffer / 30.0

    def export_state(self) -> dict[str, Any]:
        """The tracker's state as our own dataclasses (JSON through the codec, never pickle).

        Read from the ``trackers`` ByteTrack internals: the id counter, the last timestamp and,
        per tracklet, its id, counters and Kalman filter (``get_state``); the filter's motion
        model is derived from the settings and rebuilt on load."""
        t = self._tracker
        tracks = []
        for tr in t.tracks:
            kf = tr.state_estimator.kf.get_state()
            tracks.append(TrackletState(
                tracker_id=int(tr.tracker_id), age=int(tr.age), time_since_update=int(tr.time_since_update),
                time_since_update_seconds=float(tr.time_since_update_seconds),
                consecutive_updates=int(tr.number_of_successful_consecutive_updates),
                kalman=KalmanState(**kf),
            ))
        last = t._last_timestamp
        state = TrackerState(int(t._next_track_id), None if last is None else float(last), tracks)
        out: dict[str, Any] = encode(state)
        return out

    def import_state(self, data: Any) -> None:
        """Rebuild the tracker from ``export_state``: a fresh tracklet per saved one (so the noise
        configuration and motion model are the library's own), then its filter and counters."""
        from trackers.core.bytetrack.tracklet import ByteTrackTracklet

        state = decode(TrackerState, data)
        t = self._tracker
        tracks = []
        for saved in state.tracks:
            k = saved.kalman
            if k.state.shape != (8, 1) or k.state_covariance.shape != (8, 8):
                raise CodecError(f"tracklet filter of shape {k.state.shape} is not an XYXY filter")
            tr = ByteTrackTracklet(initial_bbox=k.state[:4, 0].copy(), state_estimator_class=t.state_estimator_class)
            tr.state_estimator.set_state({name: getattr(k, name) for name in KalmanState.__dataclass_fields__})
            tr.tracker_id = saved.tracker_id
            tr.age = saved.age
            tr.time_since_update = saved.time_since_update
            tr.time_since_update_seconds = saved.time_since_update_seconds
            tr.number_of_successful_consecutive_updates = saved.consecutive_updates
            tracks.append(tr)
        t.tracks = tracks
        t._next_track_id = state.next_track_id
        t._last_timestamp = state.last_timestamp

    def update(self, detections: FrameDetections) -> TrackedFrame:
        dets = detections.detections
        import supervision as sv  # on first use: see genesis.stages.analytics
        if dets:
            sv_dets = sv.Detections(
                xyxy=np.array([d.box for d in dets], dtype=np.float64),
                confidence=np.array([d.score for d in dets], dtype=np.float64),
                class_id=np.array([d.class_id for d in dets], dtype=int),
            )
        else:
            sv_dets = sv.Detections.empty()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self._tracker.update(sv_dets, timestamp=detections.frame.ts)
        persons: list[TrackedPerson] = []
        if out.tracker_id is not None:
            for box, score, tid in zip(out.xyxy, out.confidence if out.confidence is not None else [], out.tracker_id,
                                       strict=False):
                if int(tid) < 0:
                    continue
                persons.append(
                    TrackedPerson(
                        track_id=int(tid) + 1,
                        box=(round(float(box[0]), 2), round(float(box[1]), 2), round(float(box[2]), 2),
                             round(float(box[3]), 2)),
                        score=round(float(score), 4),
                    )
                )
        persons.sort(key=lambda p: p.track_id)
        return TrackedFrame(frame=detections.frame, persons=tuple(persons))
