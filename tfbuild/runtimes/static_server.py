"""A static HTTP server on 127.0.0.1 (an ephemeral port) for pages run in Chromium.

Browsers refuse to fetch model files from `file://` pages, and a deployed TF.js model is
fetched over HTTP anyway: serving the folder is how a browser user meets the artifact. The
server answers GET and HEAD for files under one root only (http.server already refuses
paths that leave it), never lists folders, logs nothing, and stops with the `with` block.
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path
from types import TracebackType

# .wasm must be served as application/wasm, or WebAssembly.instantiateStreaming refuses it.
EXTRA_TYPES = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json", ".npy": "application/octet-stream", ".bin": "application/octet-stream"}
# How often serve_forever looks for shutdown(): leaving the `with` block waits up to this
# long (the default 0.5 s was a quarter of a small model's whole browser run).
POLL_S = 0.02


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **EXTRA_TYPES}

    def list_directory(self, path):  # type: ignore[no-untyped-def]  # no folder listings
        self.send_error(404, "not found")
        return None

    def end_headers(self) -> None:
        # Every run serves fresh files under the same names: no caching between runs.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


class StaticServer:
    """`with StaticServer(folder) as server: page = server.url("index.html")`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"no folder to serve at {self.root}")
        handler = functools.partial(_Handler, directory=str(self.root))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL_S}, name="static-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, relative: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{relative.lstrip('/')}"

    def __enter__(self) -> "StaticServer":
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
