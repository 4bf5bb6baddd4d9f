"""The live browser view behind ``ffd detect SRC --serve HOST:PORT`` (the ``serve`` extra: aiohttp).

A Jetson on a camera has no screen: :class:`LiveServer` serves the annotated stream and the faces
to any browser that can reach it. It runs its own asyncio loop in a daemon thread; the pipeline's
output thread calls :meth:`LiveServer.publish` once per frame and never waits on a browser:

* ``/`` -- one small HTML page (no external resources): the stream and a live list of faces;
* ``/stream.mjpg`` -- the annotated frames as MJPEG (``multipart/x-mixed-replace``);
* ``/events`` -- Server-Sent Events: the faces of the latest frame (track id, smoothed score,
  label, a small JPEG thumbnail as a ``data:`` URI), a few times a second, then ``end``;
* ``/api/state`` -- JSON: frame index, faces, fps, per-stage ms of the pipeline, viewer counts,
  the model's name and threshold.

Each client has a size-1 queue (the newest frame replaces an unsent one): a slow browser sees fewer
frames, a vanished one is dropped when its socket fails, one that stops reading is dropped after
``write_timeout_s``. A frame is JPEG-encoded once, and only when some viewer is waiting for one, so a
server with no viewer or only stalled ones costs the pipeline almost nothing.

The socket is bound in :meth:`LiveServer.start`, in the caller's thread, before any pipeline runs: a
port in use, an address this machine does not have or a malformed ``--serve`` value is a
:class:`~edge.errors.ConfigError` naming the fix (:func:`parse_serve`, :func:`bind`). aiohttp is
imported there, not when this module is.
"""
from __future__ import annotations

import asyncio
import base64
import errno
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, require

DEFAULT_HOST = "127.0.0.1"
BOUNDARY = "ffdframe"
_SERVE_FIX = "give a port (--serve 8080: this machine only) or HOST:PORT (--serve 0.0.0.0:8080: every interface)"


# --- the --serve value and the socket ---------------------------------------------------------
def parse_serve(value: str | int) -> tuple[str, int]:
    """``"8080"`` -> ``("127.0.0.1", 8080)``; ``"0.0.0.0:8080"``, ``"[::1]:8080"``, ``"host:0"`` (0: a free
    port). A malformed value or a port outside 0..65535 is a :class:`ConfigError`."""
    text = str(value).strip()
    host, port_text = DEFAULT_HOST, text
    if text.startswith("["):  # [IPv6]:PORT
        end = text.find("]")
        if end < 0 or not text[end + 1:].startswith(":"):
            raise ConfigError(f"--serve: cannot read {text!r} as [IPv6]:PORT", fix=_SERVE_FIX)
        host, port_text = text[1:end], text[end + 2:]
    elif ":" in text:
        if text.count(":") > 1:
            raise ConfigError(f"--serve: {text!r} has several ':'; write an IPv6 address in brackets ([::1]:8080)",
                              fix=_SERVE_FIX)
        host, port_text = text.split(":")
        host = host or DEFAULT_HOST
    if not port_text.isdigit():
        raise ConfigError(f"--serve: the port must be a number, got {port_text!r} (in {text!r})", fix=_SERVE_FIX)
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigError(f"--serve: the port must be an integer in 0..65535, got {port}", fix=_SERVE_FIX)
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"--serve: no host name in {text!r}", fix=_SERVE_FIX)
    return host, port


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; the reasons it cannot be bound as :class:`ConfigError`."""
    where = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"--serve: the host {host!r} is not an address or a name this machine can resolve "
                          f"({e.strerror})", fix="give an IP address of this machine, 127.0.0.1 or 0.0.0.0") from e
    family, stype, proto, _, addr = infos[0]
    sock = socket.socket(family, stype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart while old connections linger
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"--serve: port {port} on {host} is already in use", path=where,
                              fix="choose another port (--serve 0 picks a free one) or stop the program "
                                  "holding it (`ss -ltnp`)") from e
        if e.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"--serve: {host} is not an address of this machine", path=where,
                              fix="bind 127.0.0.1 (this machine only), 0.0.0.0 (every interface) or an "
                                  "address `ip addr` lists") from e
        if e.errno == errno.EACCES:
            raise ConfigError(f"--serve: no permission to bind port {port} (ports below 1024 need privileges)",
                              path=where, fix="use a port of 1024 or above, e.g. --serve 8080") from e
        raise ConfigError(f"--serve: cannot listen on {where}: {e.strerror or e}", path=where,
                          fix=_SERVE_FIX) from e
    return sock


# --- per-client state ------------------------------------------------------------------------
@dataclass(eq=False)
class _Client:
    kind: str  # "stream" | "events"
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=1))
    waiting: bool = False  # read by the pipeline thread: this client is ready for a new item
    task: Any = None
    sent: int = 0


def _offer(q: asyncio.Queue, item) -> None:
    """Size-1 queue, newest wins (loop thread only)."""
    if q.full():
        try:
            q.get_nowait()
        except asyncio.QueueEmpty:
            pass
    q.put_nowait(item)


_END = object()


class LiveServer:
    """``with LiveServer("127.0.0.1", 8080) as srv: ... srv.publish(frame, faces, stats)``.

    ``port=0`` picks a free port (:attr:`url` says which). ``events_hz``: how often the face list
    (with thumbnails) goes to ``/events``; ``max_side``: frames larger than this are scaled down
    before JPEG encoding; ``write_timeout_s``: a client whose socket accepts nothing for that long is
    dropped; ``send_buffer``: the kernel send buffer of each client's socket (bytes; the kernel doubles it),
    what a client that stops reading holds before it counts as not waiting. :meth:`start` binds and raises
    :class:`ConfigError` before anything else runs.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0, *, jpeg_quality: int = 80, max_side: int = 1280,
                 thumb_side: int = 72, events_hz: float = 5.0, write_timeout_s: float = 10.0,
                 send_buffer: int = 128 * 1024, title: str = "ffd detect"):
        from ..settings import check

        self.host, self.port = host, port
        self.jpeg_quality = int(check("jpeg_quality", jpeg_quality, 1, 100, True, allow_none=False))
        self.max_side = int(check("max_side", max_side, 16, 16384, True, allow_none=False))
        self.thumb_side = int(check("thumb_side", thumb_side, 8, 512, True, allow_none=False))
        self.events_period_s = 1.0 / check("events_hz", events_hz, 0.1, 100.0, allow_none=False)
        self.write_timeout_s = check("write_timeout_s", write_timeout_s, 0.1, 3600.0, allow_none=False)
        self.send_buffer = int(check("send_buffer", send_buffer, 1024, 64 << 20, True, allow_none=False))
        self.title = title
        self.model: dict = {}
        self.source = ""
        self._clients: tuple[_Client, ...] = ()  # replaced (never mutated) by the loop thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._runner = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._closed = False
        self._last: tuple | None = None  # (index, time_s, faces, origin): the newest frame's results
        self._stats_snap: dict = {}
        self._stats_t = 0.0
        self._events_t = 0.0
        self._times: deque = deque(maxlen=64)  # publish times: the live fps
        self._ended = False
        self.frames_published = 0
        self.frames_encoded = 0

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "LiveServer":
        """Bind (in this thread: errors are :class:`ConfigError`), then serve from a daemon thread."""
        if self._thread is not None:
            return self
        require("aiohttp", "serve", "the live browser view (--serve)")
        self._sock = bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="ffd-live", daemon=True)
        self._thread.start()
        self._ready.wait(30.0)
        if self._failure is not None or not self._ready.is_set():
            self.close()
            raise ConfigError(f"--serve: the web server did not start: {self._failure or 'timeout'}",
                              path=f"{self.host}:{self.port}", fix=_SERVE_FIX)
        return self

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1" if host != "::" else "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    @property
    def public(self) -> bool:
        """Bound beyond loopback: anyone who reaches this machine sees the stream."""
        try:
            import ipaddress

            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host != "localhost"

    def set_model(self, name: str, threshold: float | None) -> None:
        self.model = {"name": name, "threshold": None if threshold is None else float(threshold)}

    def viewers(self) -> dict[str, int]:
        cs = self._clients
        return {"stream": sum(c.kind == "stream" for c in cs), "events": sum(c.kind == "events" for c in cs)}

    def end(self) -> None:
        """The source ended: clients get ``end`` (the page says so); the server keeps serving the last state."""
        self._ended = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            payload = self._events_payload(thumbs=True, final=True)
            try:
                loop.call_soon_threadsafe(self._deliver_end, payload)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def close(self, timeout_s: float = 5.0) -> None:
        """End every stream, stop the loop, join the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        loop, t = self._loop, self._thread
        if loop is not None and t is not None and t.is_alive():
            try:
                fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
                fut.result(timeout_s)
            except Exception:  # noqa: BLE001 - a stuck shutdown: the loop is stopped below anyway
                pass
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass
        if t is not None:
            t.join(timeout_s)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the pipeline side (any thread, never blocks) -------------------------------------------
    def publish(self, frame, faces, stats=None, *, annotated=None) -> None:
        """One processed frame: ``frame`` a :class:`~edge.stream.sources.Frame` (or a BGR image), ``faces``
        its :class:`~edge.forgery.FaceResult` list, ``stats`` the run's
        :class:`~edge.stream.pipeline.DetectStats`; ``annotated``: the frame with boxes already drawn (else
        drawn here, only when a viewer waits for it)."""
        image = getattr(frame, "image", frame)
        now = time.monotonic()
        self._times.append(now)
        self.frames_published += 1
        self._ended = False
        self._last = (getattr(frame, "index", self.frames_published - 1), float(getattr(frame, "timestamp_s", 0.0)),
                      list(faces), getattr(frame, "origin", "") or self.source, image)  # a reference, no copy
        if stats is not None and now - self._stats_t >= 0.5:
            self._stats_t = now
            self._stats_snap = _stats_snapshot(stats, self._stats_snap)
        loop = self._loop
        if loop is None or self._closed:
            return
        clients = self._clients
        jpeg = events = None
        if any(c.waiting and c.kind == "stream" for c in clients):
            jpeg = self._encode(image if annotated is None else annotated, faces, drawn=annotated is not None)
        if now - self._events_t >= self.events_period_s and any(c.waiting and c.kind == "events" for c in clients):
            self._events_t = now
            events = self._events_payload(thumbs=True)
        if jpeg is not None or events is not None:
            try:
                loop.call_soon_threadsafe(self._deliver, jpeg, events)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def _encode(self, image, faces, drawn: bool) -> bytes | None:
        import cv2

        from .sinks import draw_faces

        img = image if drawn else draw_faces(image.copy(), faces)
        h, w = img.shape[:2]
        if max(h, w) > self.max_side:
            s = self.max_side / max(h, w)
            img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            return None
        self.frames_encoded += 1
        data = buf.tobytes()
        return (b"Content-Type: image/jpeg\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data
                + b"\r\n--" + BOUNDARY.encode() + b"\r\n")  # the next boundary now: browsers show the part at once

    def _thumb(self, image, box) -> str | None:
        import cv2

        if image is None:
            return None
        h, w = image.shape[:2]
        x, y, bw, bh = (float(v) for v in box)
        pad = 0.15 * max(bw, bh)
        x0, y0 = int(max(0, x - pad)), int(max(0, y - pad))
        x1, y1 = int(min(w, x + bw + pad)), int(min(h, y + bh + pad))
        if x1 <= x0 or y1 <= y0:
            return None
        crop = image[y0:y1, x0:x1]
        s = self.thumb_side / max(crop.shape[:2])
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))),
                          interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 75])
        return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else None

    def _events_payload(self, thumbs: bool = False, final: bool = False) -> bytes:
        state = self.state(thumbs=thumbs)
        kind = "end" if final else "faces"
        return f"event: {kind}\ndata: {json.dumps(state, separators=(',', ':'))}\n\n".encode()

    def state(self, thumbs: bool = False) -> dict:
        """What ``/api/state`` returns; ``thumbs``: each face with a JPEG thumbnail (``/events``)."""
        last = self._last
        faces = []
        if last is not None:
            for f in last[2]:
                d = f.to_dict()
                d = {"track": d.pop("track_id", None), **d}
                if thumbs:
                    d["thumb"] = self._thumb(last[4], f.box)
                faces.append(d)
        ts = list(self._times)
        fps = (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] > ts[0] else 0.0
        return {"frame": None if last is None else last[0], "time": None if last is None else round(last[1], 3),
                "source": self.source if last is None else last[3], "faces": faces, "fps": round(fps, 2),
                "pipeline": self._stats_snap, "viewers": self.viewers(), "model": self.model,
                "ended": self._ended, "frames_published": self.frames_published}

    # --- the loop thread -----------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            from aiohttp import web

            app = web.Application()
            app.router.add_get("/", self._page)
            app.router.add_get("/stream.mjpg", self._stream)
            app.router.add_get("/events", self._events)
            app.router.add_get("/api/state", self._api_state)
            self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.SockSite(self._runner, self._sock, shutdown_timeout=1.0).start())
            self._loop = loop
        except Exception as e:  # noqa: BLE001 - reported by start() in the caller's thread
            self._failure = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            finally:
                loop.close()

    def _add(self, c: _Client) -> None:
        self._clients = (*self._clients, c)

    def _remove(self, c: _Client) -> None:
        self._clients = tuple(x for x in self._clients if x is not c)

    def _deliver(self, jpeg: bytes | None, events: bytes | None) -> None:
        for c in self._clients:
            item = jpeg if c.kind == "stream" else events
            if item is not None:
                c.waiting = False
                _offer(c.queue, item)

    def _deliver_end(self, payload: bytes) -> None:
        for c in self._clients:
            if c.kind == "events":
                _offer(c.queue, payload)

    async def _shutdown(self) -> None:
        for c in self._clients:
            _offer(c.queue, _END)
        tasks = [c.task for c in self._clients if c.task is not None]
        if tasks:  # readers finish at once; a client that stopped reading is cancelled
            _, late = await asyncio.wait(tasks, timeout=0.5)
            for t in late:
                t.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _page(self, request):
        from aiohttp import web

        return web.Response(text=_PAGE.replace("{{title}}", _html_escape(self.title)), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def _api_state(self, request):
        from aiohttp import web

        return web.json_response(self.state(), headers={"Cache-Control": "no-store"})

    async def _serve_client(self, request, kind: str, content_type: str, first: bytes):
        from aiohttp import web

        resp = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no", "Connection": "close"})
        c = _Client(kind, task=asyncio.current_task())
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:  # bounded: the kernel does not buffer megabytes of frames for a client that stalls
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        self._add(c)
        try:
            await resp.prepare(request)
            await asyncio.wait_for(resp.write(first), self.write_timeout_s)
            while True:
                await asyncio.wait_for(_flushed(transport), self.write_timeout_s)  # the client took the last one
                c.waiting = c.queue.empty()
                try:
                    item = await asyncio.wait_for(c.queue.get(), 15.0)
                except asyncio.TimeoutError:
                    if kind == "events":  # a comment keeps proxies and the browser from closing an idle stream
                        await asyncio.wait_for(resp.write(b": keep-alive\n\n"), self.write_timeout_s)
                    continue
                if item is _END:
                    break
                c.waiting = False
                await asyncio.wait_for(resp.write(item), self.write_timeout_s)
                c.sent += 1
        except asyncio.TimeoutError:  # the browser stopped reading: drop it without flushing what it did not take
            if request.transport is not None:
                request.transport.abort()
        except (ConnectionError, RuntimeError):
            pass  # the browser went away, or the server is closing: drop this client
        finally:
            self._remove(c)
            c.waiting = False
        if request.transport is not None and not request.transport.is_closing():
            try:
                await asyncio.wait_for(resp.write_eof(), 1.0)
            except (ConnectionError, asyncio.TimeoutError, RuntimeError):
                pass
        return resp

    async def _stream(self, request):
        return await self._serve_client(request, "stream", f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                                        f"--{BOUNDARY}\r\n".encode())

    async def _events(self, request):
        first = b"retry: 2000\n\n" + (self._events_payload(thumbs=True, final=self._ended) if self._last is not None
                                      else b"")
        return await self._serve_client(request, "events", "text/event-stream", first)


async def _flushed(transport) -> None:
    """Until what was written has left this process (into the socket's bounded kernel buffer)."""
    while transport is not None and not transport.is_closing() and transport.get_write_buffer_size() > 0:
        await asyncio.sleep(0.005)


def _stats_snapshot(stats, previous: dict) -> dict:
    """fps and mean stage ms over the recent frames of a :class:`DetectStats` whose deques other threads
    append to (copied, never iterated in place; a copy that races an append keeps the previous one)."""
    try:
        stages = {}
        for s, d in stats.stage_ms.items():
            recent = list(d.copy())[-200:]
            stages[s] = round(sum(recent) / len(recent), 3) if recent else None
        return {"fps": round(stats.fps, 2), "frames_processed": stats.frames_processed,
                "frames_read": stats.frames_read, "dropped": stats.dropped, "faces": stats.faces,
                "tracks": stats.tracks, "stage_ms": stages,
                "limiting_stage": max((s for s in stages if stages[s] is not None), key=lambda s: stages[s],
                                      default="")}
    except RuntimeError:
        return previous


def _html_escape(s: str) -> str:
    import html

    return html.escape(s, quote=True)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{title}}</title>
<style>
body{margin:0;font:14px/1.4 system-ui,sans-serif;background:#111;color:#eee}
header{padding:8px 14px;background:#222;display:flex;gap:18px;align-items:baseline;flex-wrap:wrap}
header b{font-size:16px} #status{color:#9c9} #status.off{color:#e88}
main{display:flex;gap:14px;padding:14px;flex-wrap:wrap;align-items:flex-start}
#view{max-width:min(100%,960px);height:auto;background:#000;border:1px solid #333;min-width:320px;min-height:180px}
#side{flex:1;min-width:260px} ul{list-style:none;padding:0;margin:0}
li{display:flex;gap:10px;align-items:center;background:#1c1c1c;margin:0 0 8px;padding:6px;border-left:5px solid #888}
li.fake{border-color:#e33} li.real{border-color:#2b2} li.uncertain{border-color:#fb2}
li img{width:72px;height:72px;object-fit:cover;background:#000} .score{font-size:20px;font-weight:600}
small{color:#aaa}
</style></head><body>
<header><b>{{title}}</b><span id="model"></span><span id="fps"></span><span id="status">connecting</span></header>
<main><img id="view" alt="annotated stream">
<section id="side"><h3 style="margin:0 0 8px">Faces <small id="nfaces"></small></h3><ul id="faces"></ul>
</section></main>
<script>
"use strict";
const $ = id => document.getElementById(id);
function render(s) {
  if (s.model && s.model.name) $("model").textContent = s.model.name +
    (s.model.threshold == null ? "" : " (threshold " + s.model.threshold.toFixed(3) + ")");
  const p = s.pipeline || {};
  $("fps").textContent = "frame " + s.frame + " | " + s.fps + " fps" +
    (p.limiting_stage ? " | slowest stage: " + p.limiting_stage : "");
  $("nfaces").textContent = "(" + s.faces.length + ")";
  const ul = $("faces");
  ul.replaceChildren(...s.faces.map(f => {
    const li = document.createElement("li");
    li.className = f.label;
    li.dataset.track = f.track;
    if (f.thumb) { const im = document.createElement("img"); im.src = f.thumb; im.alt = "face"; li.append(im); }
    const t = document.createElement("div");
    t.innerHTML = "<div class=score></div><div class=lab></div><small></small>";
    t.querySelector(".score").textContent = f.score.toFixed(3);
    t.querySelector(".lab").textContent = "#" + f.track + " " + f.label;
    t.querySelector("small").textContent = "P(fake) smoothed; raw " + (f.raw_score ?? f.score).toFixed(3);
    li.append(t);
    return li;
  }));
}
// the endless MJPEG response starts after the page's load event, so the page itself finishes loading
window.addEventListener("load", () => { $("view").src = "/stream.mjpg"; });
const es = new EventSource("/events");
es.onopen = () => { $("status").textContent = "live"; $("status").className = ""; };
es.addEventListener("faces", e => render(JSON.parse(e.data)));
es.addEventListener("end", e => { render(JSON.parse(e.data)); $("status").textContent = "source ended";
  $("status").className = "off"; });
es.onerror = () => { if ($("status").textContent !== "source ended") {
  $("status").textContent = "disconnected"; $("status").className = "off"; } };
</script></body></html>
"""
