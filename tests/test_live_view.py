"""The live browser view of ``ffd detect SRC --serve HOST:PORT`` (edge.stream.live): a real aiohttp server on
127.0.0.1, real clients (headless Chromium through selenium, raw sockets, urllib) and the real pipeline on a
generated clip of real faces. Skipped with the reason where aiohttp, selenium or Chromium is missing."""
from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from browser import headless_chromium
from conftest import make_tiny_onnx
from edge.errors import ConfigError
from edge.stream.live import BOUNDARY, LiveServer, parse_serve
from media import write_face_video

ROOT = Path(__file__).resolve().parents[1]


def _need_aiohttp():
    pytest.importorskip("aiohttp", reason="the serve extra (aiohttp) is not installed: pip install 'ffd-edge[serve]'")


@pytest.fixture(scope="module")
def clip(tmp_path_factory, london_neutral, yunet_model):
    d = tmp_path_factory.mktemp("live")
    return write_face_video(d / "faces.avi", london_neutral[:3], n_frames=45, fps=15, size=(320, 240), codec="MJPG")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_onnx(tmp_path_factory.mktemp("live_model") / "tiny_live.onnx", name="tiny_live")


def _run_detect(clip, model, server, **kw):
    """Consume detect_stream on ``clip`` with the live view; (records, stats)."""
    from edge.detect import detect_stream
    from edge.stream import DetectStats

    stats = DetectStats()
    recs = list(detect_stream(str(clip), model, serve=server, stats=stats, batch_size=4, **kw))
    return recs, stats


def _wait(cond, timeout=10.0, what="condition"):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _get(sock_addr, path: str, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(sock_addr)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


# --- bad input ---------------------------------------------------------------------------------
def test_serve_values_parse_and_malformed_ones_say_how():
    assert parse_serve("8080") == ("127.0.0.1", 8080)
    assert parse_serve(9000) == ("127.0.0.1", 9000)
    assert parse_serve("0.0.0.0:8081") == ("0.0.0.0", 8081)
    assert parse_serve(":0") == ("127.0.0.1", 0)
    assert parse_serve("[::1]:8082") == ("::1", 8082)
    assert parse_serve("jetson.local:80") == ("jetson.local", 80)
    for bad, why in [("abc", "must be a number"), ("70000", "0..65535"), ("host:", "must be a number"),
                     ("::1:80", "several ':'"), ("[::1]8080", "IPv6"), ("-1", "must be a number"),
                     ("127.0.0.1:80x", "must be a number"), ("", "must be a number")]:
        with pytest.raises(ConfigError, match=why) as e:
            parse_serve(bad)
        assert e.value.fix and "--serve" in e.value.fix


def test_port_in_use_is_a_clear_error_before_anything_runs():
    _need_aiohttp()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is already in use") as e:
            LiveServer("127.0.0.1", port).start()
        assert "another port" in e.value.fix
        assert not any(t.name == "ffd-live" for t in threading.enumerate())
    finally:
        holder.close()


def test_an_address_this_machine_does_not_have_is_a_clear_error():
    _need_aiohttp()
    with pytest.raises(ConfigError, match="10.255.255.1 is not an address of this machine") as e:
        LiveServer("10.255.255.1", 0).start()
    assert "127.0.0.1" in e.value.fix and "0.0.0.0" in e.value.fix
    assert not any(t.name == "ffd-live" for t in threading.enumerate())


def test_without_aiohttp_the_extra_is_named():
    """A subprocess where aiohttp cannot be imported: the module imports, starting says which extra to install."""
    code = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "aiohttp":
            raise ImportError("blocked")
sys.meta_path.insert(0, _Block())
from edge.stream.live import LiveServer
from edge.errors import MissingDependencyError
try:
    LiveServer().start()
except MissingDependencyError as e:
    print(e)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "aiohttp" in r.stdout and "pip install 'ffd-edge[serve]'" in r.stdout


def test_cli_bad_serve_values_exit_with_one_line_before_the_pipeline(clip, model, tmp_path):
    _need_aiohttp()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    busy = holder.getsockname()[1]
    out = tmp_path / "recs.jsonl"
    try:
        for value, why in [("abc", "the port must be a number"), (f"127.0.0.1:{busy}", "already in use")]:
            r = subprocess.run([sys.executable, "-m", "ffd", "detect", str(clip), "-m", str(model), "-o", str(out),
                                "--serve", value], capture_output=True, text=True, cwd=ROOT, timeout=120)
            lines = r.stderr.strip().splitlines()
            assert r.returncode == 3, r.stderr
            assert len(lines) == 1 and lines[0].startswith("error: ") and why in lines[0] and "fix: " in lines[0]
            assert not out.exists()  # nothing ran: no records written
    finally:
        holder.close()


def test_detect_sources_refuses_bad_serve_values_before_opening_anything(tmp_path, model, clip, london_neutral):
    from edge.detect import detect_sources

    _need_aiohttp()
    out = tmp_path / "o.jsonl"
    with pytest.raises(ConfigError, match="--serve shows videos"):
        detect_sources([str(london_neutral[0])], model, out, serve="0")
    for value, why in [("70000", "0..65535"), ("10.255.255.1:8080", "not an address of this machine")]:
        with pytest.raises(ConfigError, match=why):
            detect_sources([str(clip)], model, out, serve=value)
    assert not out.exists() and not list(tmp_path.iterdir())  # no output, no temporary file
    assert not any(t.name.startswith(("ffd-live", "ffd-decode")) for t in threading.enumerate())


# --- the page in a real browser ------------------------------------------------------------------
def _chromium(tmp_path):
    _need_aiohttp()
    return headless_chromium(tmp_path)


def test_browser_shows_the_annotated_stream_and_the_faces(clip, model, tmp_path):
    from selenium.webdriver.common.by import By

    drv = _chromium(tmp_path)
    try:
        with LiveServer("127.0.0.1", 0) as srv:
            drv.set_page_load_timeout(20)
            drv.get(srv.url)  # the page is up before the source starts: it waits for frames
            _wait(lambda: srv.viewers() == {"stream": 1, "events": 1}, what="the page's two streams")
            result = {}
            t = threading.Thread(target=lambda: result.update(zip(("recs", "stats"), _run_detect(
                clip, model, srv, pace_fps=15))), daemon=True)
            t.start()
            _wait(lambda: drv.execute_script("return document.getElementById('view').naturalWidth") > 0,
                  timeout=20, what="an MJPEG frame in the <img>")
            _wait(lambda: len(drv.find_elements(By.CSS_SELECTOR, "#faces li")) >= 1, timeout=20,
                  what="a face entry from /events")
            state = json.loads(urllib.request.urlopen(srv.url + "api/state", timeout=5).read())
            assert state["model"]["name"] == "tiny_live" and state["model"]["threshold"] == 0.5
            assert state["viewers"] == {"stream": 1, "events": 1}
            t.join(30)
            assert not t.is_alive()
            assert result["stats"].end == "eos" and result["stats"].frames_processed == 45
            # the MJPEG frame shows the annotated image (the page's <img> has the frame's size)
            assert drv.execute_script("return document.getElementById('view').naturalWidth") == 320
            _wait(lambda: drv.find_element(By.ID, "status").text == "source ended", what="the end event")
            # the list stays as the last frame left it: the entry shows its label, track, score and thumbnail
            first = "document.querySelector('#faces li')"
            _wait(lambda: drv.execute_script(f"return {first}.querySelector('img').naturalWidth") > 0,
                  what="the thumbnail decoded")
            entry = drv.execute_script(f"const li = {first}; return [li.className, li.dataset.track, "
                                       "li.querySelector('img').src.slice(0, 23), li.innerText]")
            assert entry[0] in ("real", "fake", "uncertain") and entry[1].isdigit()
            assert entry[2] == "data:image/jpeg;base64,"
            assert f"#{entry[1]} {entry[0]}" in entry[3]
            state = json.loads(urllib.request.urlopen(srv.url + "api/state", timeout=5).read())
            assert state["ended"] and state["frame"] == 44 and state["faces"]
            assert set(state["pipeline"]["stage_ms"]) == {"decode", "detect", "preprocess", "infer", "output"}
            assert state["fps"] > 0 and state["pipeline"]["frames_processed"] >= 1
            assert {"track", "score", "label", "box"} <= set(state["faces"][0])
    finally:
        drv.quit()


# --- bad clients ---------------------------------------------------------------------------------
def _read_parts(url: str, n: int, got: list, stop: threading.Event) -> None:
    """A reading viewer: counts MJPEG parts (JPEG start markers) until ``n`` or the stream ends."""
    host, port = url.split("//")[1].strip("/").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=20)
    c.request("GET", "/stream.mjpg")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    buf = b""
    try:
        while len(got) < n and not stop.is_set():
            chunk = r.read1(65536)
            if not chunk:
                break
            buf += chunk
            while (i := buf.find(b"Content-Type: image/jpeg")) >= 0 and (j := buf.find(b"\xff\xd9", i)) >= 0:
                got.append(buf[buf.find(b"\xff\xd8", i):j + 2])
                buf = buf[j + 2:]
    finally:
        c.close()


def test_stalled_and_vanishing_clients_do_not_break_the_run_and_several_viewers_get_frames(clip, model):
    import cv2
    import numpy as np

    _need_aiohttp()
    with LiveServer("127.0.0.1", 0, write_timeout_s=1.5, send_buffer=4096) as srv:
        addr = ("127.0.0.1", srv.port)
        stalled = _get(addr, "/stream.mjpg", rcvbuf=4096)  # connects, never reads
        stalled_ev = _get(addr, "/events", rcvbuf=4096)
        quitter = _get(addr, "/stream.mjpg")  # reads a few bytes mid-stream, then vanishes
        got_a, got_b, stop = [], [], threading.Event()
        readers = [threading.Thread(target=_read_parts, args=(srv.url, 10**6, g, stop), daemon=True)
                   for g in (got_a, got_b)]
        for t in readers:
            t.start()
        _wait(lambda: srv.viewers()["stream"] == 4 and srv.viewers()["events"] == 1, what="four viewers")
        result = {}
        t = threading.Thread(target=lambda: result.update(zip(("recs", "stats"), _run_detect(
            clip, model, srv, pace_fps=15))), daemon=True)
        t.start()
        assert quitter.recv(200)  # a frame was on its way ...
        quitter.close()  # ... and the browser is gone
        _wait(lambda: srv.viewers()["stream"] == 3, what="the vanished client dropped")
        # a client that stopped reading is dropped once its socket accepted nothing for write_timeout_s
        _wait(lambda: srv.viewers() == {"stream": 2, "events": 0}, timeout=15, what="the stalled clients dropped")
        t.join(30)
        assert not t.is_alive()
        recs, stats = result["recs"], result["stats"]
        assert stats.end == "eos" and stats.error is None and stats.frames_processed == 45 and len(recs) >= 40
        stop.set()
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 3.0  # shutdown does not wait for the clients: it ends their streams
    assert not any(th.name == "ffd-live" for th in threading.enumerate())
    for r in readers:
        r.join(5)
        assert not r.is_alive()  # the readers saw their stream end
    for got in (got_a, got_b):  # both readers saw frames, the newest ones: the last frame is in
        assert len(got) >= 10, len(got)
        img = cv2.imdecode(np.frombuffer(got[-1], np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape == (240, 320, 3)
    # frames are encoded once for all viewers, never once per viewer
    assert srv.frames_encoded <= srv.frames_published == 45
    stalled.close()
    stalled_ev.close()


def test_a_stalled_client_alone_costs_no_encoding_once_its_socket_is_full(london_neutral, model, tmp_path):
    """Only a client that never reads: after its buffers fill, no frame is JPEG-encoded for it. The bound is
    what the socket buffers hold (the server caps its send buffer at 128 KiB, which Linux doubles; the client's
    receive buffer is 4 KiB), far below the clip's 150 frames: a server that kept encoding would reach 150."""
    _need_aiohttp()
    long_clip = write_face_video(tmp_path / "long.avi", london_neutral[:3], n_frames=150, fps=15, size=(320, 240),
                                 codec="MJPG")
    with LiveServer("127.0.0.1", 0, write_timeout_s=60) as srv:
        stalled = _get(("127.0.0.1", srv.port), "/stream.mjpg", rcvbuf=4096)
        _wait(lambda: srv.viewers()["stream"] == 1, what="the client")
        _, stats = _run_detect(long_clip, model, srv)
        assert stats.end == "eos" and stats.frames_processed == 150
        assert srv.viewers()["stream"] == 1  # still connected, still not reading
        assert srv.frames_encoded < 75, srv.frames_encoded  # a few dozen frames filled its buffers, then none
        stalled.close()


def test_cli_serves_and_ends_cleanly(clip, model, tmp_path):
    """``ffd detect CLIP --serve 127.0.0.1:0``: the URL is logged, records are written, the run ends (eos)."""
    _need_aiohttp()
    out = tmp_path / "recs.jsonl"
    r = subprocess.run([sys.executable, "-m", "ffd", "detect", str(clip), "-m", str(model), "-o", str(out),
                        "--serve", "127.0.0.1:0"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "live view: http://127.0.0.1:" in r.stderr and "(this machine only)" in r.stderr
    assert "end: eos" in r.stderr
    assert len(out.read_text().splitlines()) >= 40


def test_ctrl_c_with_viewers_attached_ends_cleanly(london_neutral, yunet_model, model, tmp_path):
    """SIGINT to ``ffd detect --serve`` while a reader and a client that stopped reading are connected: exit 130
    within seconds, records so far kept, the reader's stream ends."""
    import signal

    _need_aiohttp()
    long_clip = write_face_video(tmp_path / "long.avi", london_neutral[:2], n_frames=600, fps=30, size=(320, 240),
                                 codec="MJPG")
    out = tmp_path / "recs.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "ffd", "detect", str(long_clip), "-m", str(model), "-o", str(out),
                          "--serve", "0"], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = p.stderr.readline()
        assert line.startswith("live view: http://127.0.0.1:"), line
        url = line.split()[2]
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        stalled = _get(("127.0.0.1", port), "/stream.mjpg", rcvbuf=4096)
        got, stop = [], threading.Event()
        reader = threading.Thread(target=_read_parts, args=(url, 10**6, got, stop), daemon=True)
        reader.start()
        _wait(lambda: len(got) >= 3, timeout=20, what="frames at the reader")
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        rc = p.wait(20)
        err = p.stderr.read()
        assert rc == 130, err
        assert time.monotonic() - t0 < 10
        assert "interrupted (SIGINT)" in err
        reader.join(5)
        assert not reader.is_alive()  # its stream was closed by the shutdown
        assert out.is_file() and out.read_text().count("\n") >= 1  # the records so far are kept
        stalled.close()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
