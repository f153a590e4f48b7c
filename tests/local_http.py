"""A real HTTP server on 127.0.0.1 for download tests: each path answers as its route says.

Routes are callables given the request handler; :func:`body`, :func:`drip`
and :func:`short` build the usual ones (a file, a server sending a byte every
so often, a server closing before the announced length). ``hits`` counts the
requests per path (to see what was retried).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Route = Callable[[BaseHTTPRequestHandler], None]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        route = self.server.routes.get(self.path)
        self.server.hits[self.path] += 1
        if route is None:
            self.send_error(404)
            return
        try:
            route(self)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
            pass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    hits: Counter[str]


def body(data: bytes, content_length: bool = True) -> Route:
    """200 with ``data``; without ``Content-Length`` the body ends when the connection closes."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        if content_length:
            h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return route


def announce(length: int, data: bytes = b"") -> Route:
    """200 announcing ``length`` bytes (``Content-Length``) and sending only ``data``, then closing."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(length))
        h.end_headers()
        h.wfile.write(data)

    return route


def drip(length: int, every_s: float) -> Route:
    """200 with ``length`` bytes, one every ``every_s`` seconds (a socket timeout per read never fires)."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(length))
        h.end_headers()
        for _ in range(length):
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(every_s)

    return route


@contextmanager
def serve(routes: dict[str, Route]) -> Iterator[tuple[str, Counter[str]]]:
    """Serve ``routes`` on 127.0.0.1 (a free port) in a thread; yields (base URL, hits per path)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.routes = routes
    server.hits = Counter()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.hits
    finally:
        server.shutdown()
        server.server_close()
