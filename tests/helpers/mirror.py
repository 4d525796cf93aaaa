"""A release mirror served on 127.0.0.1: files from memory, HTTP range requests, and switches for
the ways a server goes wrong: a connection cut short, a body without end, a body that comes one
byte at a time, a body that stops until the test lets it go on."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Mirror:
    """``files``: URL path under the base (e.g. "raw/train.en.gz") -> bytes."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.cut_after: int | None = None  # send only this many bytes of each body, then close
        self.endless = False  # no Content-Length, and the body never ends (zeros until the client leaves)
        self.announce: int | None = None  # the Content-Length to state instead of the file's size
        self.drip_s: float | None = None  # send the body one byte at a time, this many seconds apart
        self.hold_after: int | None = None  # send this many bytes of each body, then wait for `go_on`
        self.go_on = threading.Event()
        self.ranges: list[str] = []  # the Range headers received
        self.requests: list[str] = []  # the paths asked for
        self._closing = threading.Event()

    @contextlib.contextmanager
    def serving(self) -> Iterator[str]:
        """Serve until the block ends; yields the base URL."""
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server interface)
                try:
                    self._get()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client went away: that is the test's business

            def _get(self):
                mirror.requests.append(self.path)
                data = mirror.files.get(self.path.removeprefix("/task1/"))
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if (header := self.headers.get("Range")) is not None:
                    mirror.ranges.append(header)
                    start = int(header.removeprefix("bytes=").rstrip("-"))
                    if start >= len(data):
                        self.send_error(416)
                        return
                self.send_response(206 if start else 200)
                body = data[start:]
                if mirror.endless:
                    self.end_headers()
                    block = bytes(1 << 16)
                    while not mirror._closing.is_set():
                        self.wfile.write(block)
                    return
                self.send_header("Content-Length", str(mirror.announce or len(body)))
                self.end_headers()
                if mirror.cut_after is not None:
                    body = body[: mirror.cut_after]
                    self.close_connection = True
                if mirror.hold_after is not None:
                    self.wfile.write(body[: mirror.hold_after])
                    self.wfile.flush()
                    while not mirror.go_on.wait(0.05):
                        if mirror._closing.is_set():
                            return
                    body = body[mirror.hold_after :]
                if mirror.drip_s is None:
                    self.wfile.write(body)
                    return
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    if mirror._closing.wait(mirror.drip_s):
                        return

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self._closing.clear()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/task1"
        finally:
            self._closing.set()
            server.shutdown()
            server.server_close()
