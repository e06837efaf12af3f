"""A stand-in Kubernetes API for the soak check tests: canned JSON answers per path.

Only the API's responses are faked: the code under test talks to it through the real
Kubernetes client, built from a kubeconfig as a user's would be (``$KUBECONFIG``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes.config import kube_config

from lab.api import write_kubeconfig

__all__ = ["FakeApi", "fake_api"]


class FakeApi:
    """Answers ``GET <path>`` with ``routes[path]`` (``(status, body)``); anything else is 404.

    ``requests`` keeps every ``(path, query)`` asked, in order.
    """

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, Any]] = {}
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.url = ""

    def set(self, path: str, body: Any, status: int = 200) -> None:
        self.routes[path] = (status, body)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                api.requests.append((parts.path, parse_qs(parts.query)))
                status, body = api.routes.get(parts.path, (404, None))
                if status != 200:
                    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return None

        return Handler


@contextmanager
def fake_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    """A :class:`FakeApi` served on a free port, named by ``$KUBECONFIG`` while the block runs."""
    api = FakeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), api.handler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    path = write_kubeconfig(tmp_path / ".kube" / "config", api.url)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
