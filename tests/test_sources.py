"""edge.stream.sources: URI parsing, files/folders, and live-source outcomes (timeout, reconnect, loss) on loopback."""
from __future__ import annotations

import functools
import http.server
import threading

import pytest

from edge.errors import BackendUnavailableError
from edge.stream.sources import (EndOfStream, FileSource, FolderSource, SourceError, SourceTimeout, backoff_delays,
                          open_source, parse_uri)
from media import write_corrupt_files, write_face_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory, london_neutral):
    d = tmp_path_factory.mktemp("src")
    return write_face_video(d / "clip.avi", london_neutral[:2], n_frames=12, fps=10, size=(160, 120), codec="MJPG")


def test_parse_uri_kinds(tmp_path):
    assert parse_uri("/dev/video0").kind == "v4l2"
    assert parse_uri("v4l2:///dev/video1").target == "/dev/video1"
    assert parse_uri("2").target == 2 and parse_uri(0).kind == "v4l2"
    csi = parse_uri("csi://1", width=1920, height=1080, fps=30)
    assert csi.kind == "csi" and csi.api == "gstreamer" and "nvarguscamerasrc sensor-id=1" in csi.target
    assert "width=(int)1920" in csi.target and csi.target.rstrip().split("!")[-1].strip().startswith("appsink")
    for u in ("rtsp://cam.local:8554/live", "http://127.0.0.1:8080/v.mjpg", "rtmp://x/y"):
        assert parse_uri(u).kind == "stream" and parse_uri(u).live
    assert parse_uri("videotestsrc ! videoconvert ! appsink").kind == "gstreamer"
    assert parse_uri(str(tmp_path)).kind == "folder"
    assert parse_uri(str(tmp_path / "a.mp4")).kind == "file" and not parse_uri("a.mp4").live
    assert parse_uri("file:///x/a.jpg").kind == "image"
    with pytest.raises(SourceError):
        parse_uri("ftp://host/x.mp4")
    with pytest.raises(SourceError):
        parse_uri("csi://front")


def test_backoff_schedule():
    assert list(backoff_delays(0.5, 4.0, 6)) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert list(backoff_delays(1, 8, 0)) == []


def test_file_source_reads_every_frame_then_end_of_stream(clip):
    with open_source(str(clip)) as src:
        assert isinstance(src, FileSource) and not src.live and src.fps == pytest.approx(10)
        frames = list(src)
        assert [f.index for f in frames] == list(range(12))
        assert frames[3].timestamp_s == pytest.approx(0.3) and frames[0].image.shape == (120, 160, 3)
        with pytest.raises(EndOfStream):
            src.read()


def test_bad_files_are_source_errors(tmp_path):
    bad = write_corrupt_files(tmp_path)
    for k in ("zero_mp4", "text_mp4", "truncated_mp4", "zero_jpg", "truncated_jpg"):
        with pytest.raises(SourceError) as e:
            open_source(str(bad[k]))
        assert e.value.path == str(bad[k])
    with pytest.raises(SourceError):
        open_source(str(tmp_path / "missing.mp4"))


def test_folder_source_plays_files_in_turn_and_records_bad_ones(tmp_path, clip, london_neutral):
    import shutil

    shutil.copy(clip, tmp_path / "a.avi")
    shutil.copy(london_neutral[0], tmp_path / "b.jpg")
    (tmp_path / "c.mp4").write_bytes(b"")
    with open_source(str(tmp_path)) as src:
        assert isinstance(src, FolderSource)
        frames = list(src)
    assert len(frames) == 13 and [f.index for f in frames] == list(range(13))
    assert frames[-1].origin.endswith("b.jpg")
    assert [p for p, _ in src.errors] == [str(tmp_path / "c.mp4")]


def test_csi_needs_gstreamer_or_says_so():
    import cv2

    if "GStreamer:                   YES" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer; no CSI camera to test against")
    with pytest.raises(BackendUnavailableError, match="GStreamer"):
        open_source("csi://0", max_retries=0)


def test_missing_camera_fails_after_retries():
    with pytest.raises(SourceError, match="cannot open live source") as e:
        open_source("/dev/video97", backoff_s=0.01, max_retries=2)
    assert "check the camera" in e.value.fix


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def test_stream_reconnects_then_times_out_then_is_lost(clip):
    """A loopback HTTP stream: EOF -> reconnect (frames continue); server gone -> timeouts, then SourceError."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(clip.parent)))
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    src = open_source(f"http://127.0.0.1:{srv.server_address[1]}/{clip.name}", backoff_s=0.05, max_backoff_s=0.2,
                      max_retries=3, buffer=64)
    try:
        assert src.live
        got = []
        while len(got) < 18:  # the clip has 12 frames: more than that needs a reconnect
            try:
                got.append(src.read(5.0))
            except SourceTimeout:
                continue
        assert src.reconnects >= 1 and got[-1].index == 17
        srv.shutdown()
        srv.server_close()
        outcomes = []
        while True:
            try:
                src.read(0.02)
                outcomes.append("frame")
            except SourceTimeout:
                outcomes.append("timeout")
            except SourceError:
                outcomes.append("error")
                break
        assert "timeout" in outcomes and outcomes[-1] == "error"
        assert src.retry_log[-3:] == [0.05, 0.1, 0.2]
    finally:
        src.close()
        srv.server_close()
