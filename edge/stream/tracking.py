"""Face tracks across frames by box overlap (IoU), with per-track smoothing of scores.

A greedy IoU tracker in the style of SORT without a motion model: each new box is matched to
the unmatched track it overlaps most (IoU >= ``iou_threshold``); unmatched boxes start new
tracks; a track unseen for more than ``max_age`` frames ends. Each track keeps an
exponential moving average of its scores, ``ema = alpha * score + (1 - alpha) * ema``
(``alpha=1`` disables smoothing), so one odd frame does not flip a face's label.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ConfigError

Box = tuple[float, float, float, float]  # (x, y, w, h)


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """Pairwise IoU of (x, y, w, h) boxes, shape (len(a), len(b))."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    A, B = np.asarray(a, np.float64)[:, None, :], np.asarray(b, np.float64)[None, :, :]
    x1 = np.maximum(A[..., 0], B[..., 0])
    y1 = np.maximum(A[..., 1], B[..., 1])
    x2 = np.minimum(A[..., 0] + A[..., 2], B[..., 0] + B[..., 2])
    y2 = np.minimum(A[..., 1] + A[..., 3], B[..., 1] + B[..., 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = A[..., 2] * A[..., 3] + B[..., 2] * B[..., 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class Track:
    track_id: int
    box: Box
    ema: float
    hits: int = 1
    last_frame: int = 0


class IouTracker:
    """``update(frame_index, boxes, scores) -> [(track_id, smoothed_score)]`` in input order."""

    def __init__(self, iou_threshold: float = 0.3, max_age: int = 15, alpha: float = 0.3):
        if not 0 < alpha <= 1:
            raise ConfigError(f"the score smoothing weight (alpha, smooth=) must be in (0, 1], got {alpha}",
                              fix="pass a weight of a new score in (0, 1]; 1 turns smoothing off")
        self.iou_threshold, self.max_age, self.alpha = iou_threshold, max_age, alpha
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, frame_index: int, boxes: Sequence[Box], scores: Sequence[float]) -> list[tuple[int, float]]:
        self.tracks = [t for t in self.tracks if frame_index - t.last_frame <= self.max_age]
        iou = iou_matrix(boxes, [t.box for t in self.tracks])
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        if iou.size:
            for flat in np.argsort(-iou, axis=None):  # greedy: best overlaps first
                i, j = divmod(int(flat), iou.shape[1])
                if iou[i, j] < self.iou_threshold:
                    break
                if i in assigned or j in used:
                    continue
                assigned[i] = self.tracks[j]
                used.add(j)
        out = []
        for i, (box, s) in enumerate(zip(boxes, scores)):
            t = assigned.get(i)
            if t is None:
                t = Track(self._next_id, tuple(box), float(s), last_frame=frame_index)
                self._next_id += 1
                self.tracks.append(t)
            else:
                t.ema = self.alpha * float(s) + (1.0 - self.alpha) * t.ema
                t.box, t.hits, t.last_frame = tuple(box), t.hits + 1, frame_index
            out.append((t.track_id, t.ema))
        return out
