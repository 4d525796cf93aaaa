"""A release mirror served on 127.0.0.1: files from memory, HTTP range requests, and a switch
that cuts every response short (a connection lost mid-download)."""

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
        self.ranges: list[str] = []  # the Range headers received

    @contextlib.contextmanager
    def serving(self) -> Iterator[str]:
        """Serve until the block ends; yields the base URL."""
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server interface)
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
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                self.wfile.write(body if mirror.cut_after is None else body[: mirror.cut_after])
                if mirror.cut_after is not None:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/task1"
        finally:
            server.shutdown()
            server.server_close()
