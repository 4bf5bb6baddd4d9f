"""Where a stream's results go: boxes drawn on the frame (:func:`draw_faces`), an annotated video file
(:class:`VideoOut`) and an overlay window where a display exists (:func:`display_available`)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError

_COLORS = {"fake": (0, 0, 255), "real": (0, 200, 0), "uncertain": (0, 200, 255)}


def draw_faces(image: np.ndarray, faces) -> np.ndarray:
    """Boxes coloured by label (red fake, green real, amber uncertain) with track id and score."""
    import cv2

    for f in faces:
        x, y, w, h = (int(round(v)) for v in f.box)
        c = _COLORS.get(f.label, (255, 255, 255))
        cv2.rectangle(image, (x, y), (x + w, y + h), c, 2)
        txt = f"#{f.track_id} {f.label} {f.score:.2f}"
        cv2.putText(image, txt, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, c, 1, cv2.LINE_AA)
    return image


def display_available() -> bool:
    """True when a window can be shown: a display is set and this OpenCV has GUI support."""
    import cv2

    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    gui = [ln for ln in cv2.getBuildInformation().splitlines() if "GUI:" in ln]
    return bool(gui) and "NONE" not in gui[0].upper()


class VideoOut:
    """Annotated video file writer, opened on the first frame (size) at the source's fps."""

    def __init__(self, path: str | os.PathLike, fps: float):
        self.path, self.fps, self._w = Path(path), fps if fps and fps > 0 else 25.0, None

    def write(self, image: np.ndarray) -> None:
        import cv2

        if self._w is None:
            if not self.path.parent.is_dir():
                raise ConfigError("the folder of the output video does not exist", path=self.path.parent)
            fourcc = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
            h, w = image.shape[:2]
            from ..outputs import temp_path

            self._tmp = temp_path(self.path)  # renamed over path on close: never truncates before a frame
            self._w = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*fourcc), self.fps, (w, h))
            if not self._w.isOpened():
                self._w = None
                self._tmp.unlink(missing_ok=True)
                raise ConfigError("cannot write the output video (read-only folder, disk full or unknown format)",
                                  path=self.path, fix="use a writable folder and a .mp4 or .avi name")
        self._w.write(image)

    def close(self) -> None:
        if self._w is not None:
            from ..outputs import commit

            self._w.release()
            self._w = None
            commit(self._tmp, self.path)
