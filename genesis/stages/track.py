"""Track: ByteTrack (roboflow `trackers`) over one camera's ordered detections.

One tracker per camera (a tracker shared across streams mixes ids). Ids start at 1 for
each run of a camera and only confirmed tracks (seen ``minimum_consecutive_frames`` times)
get one; unconfirmed boxes are dropped here, so no later stage sees a track without an id.
The tracker is driven by frame timestamps, so a frame stride or a dropped frame ages lost
tracks by real time, not by call count.
"""

from __future__ import annotations

import warnings

import numpy as np
import supervision as sv

from genesis.config import TrackerConfig
from genesis.domain import FrameDetections, TrackedFrame, TrackedPerson


class CameraTracker:
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

    def update(self, detections: FrameDetections) -> TrackedFrame:
        dets = detections.detections
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
