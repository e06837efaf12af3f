"""Headless Chromium for report pages: open a local HTML file, evaluate, screenshot, print to PDF.

Chromium runs as its own process group (``--headless=new --no-sandbox --disable-gpu``, a
throwaway ``--user-data-dir``) and is driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: file descriptors 3 and 4, NUL-separated JSON), so no port
is opened and no script is added to the page. Every command is bounded by a timeout;
on a timeout, an error or leaving the ``with`` block the whole process group is
stopped (by its id). Failures are ReportError with one line naming the step and the fix.

``screenshot(page, out)`` and ``print_pdf(page, out)`` do one page with a temporary
profile; ``snapshot_pages`` writes ``<stem>-page.png`` (a name no plot uses) and/or
``<stem>.pdf`` beside each page with one Chromium; ``Browser`` keeps one Chromium for
several pages (``open`` -> ``Tab``).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import psutil

from reports.errors import ReportError

__all__ = [
    "CHROMIUM_MISSING",
    "DEFAULT_TIMEOUT",
    "MAX_SHOT_HEIGHT",
    "Browser",
    "Tab",
    "find_chromium",
    "page_shot_name",
    "print_pdf",
    "require_chromium",
    "screenshot",
    "snapshot_pages",
]

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_MISSING = "chromium is not installed: apt-get install chromium (make setup does)"
DEFAULT_TIMEOUT = 20.0
#: A full-page screenshot stops this many CSS pixels down (Chromium's texture limit is near 16384).
MAX_SHOT_HEIGHT = 16000
LOG_NAME = "chromium.log"
_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--remote-debugging-pipe",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
)


def find_chromium() -> str | None:
    """The Chromium binary on PATH (``chromium`` or ``chromium-browser``), or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The Chromium binary; ReportError with the install command when there is none."""
    found = find_chromium()
    if found is None:
        raise ReportError(CHROMIUM_MISSING)
    return found


def _high(fd: int) -> int:
    """``fd`` moved to 10 or above (close-on-exec), so mapping it onto 3 or 4 cannot clobber the other."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Tab:
    """One page opened by ``Browser.open``; ``requests`` lists every URL the page asked for."""

    def __init__(self, browser: Browser, session: str, page: Path) -> None:
        self._browser = browser
        self.session = session
        self.page = page
        self.requests: list[str] = []

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One DevTools command in this page's session; returns its result."""
        return self._browser.call(method, params, session=self.session)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression evaluated in the page (promises awaited)."""
        answer = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in answer:
            detail = answer["exceptionDetails"].get("exception", {}).get("description") or answer[
                "exceptionDetails"
            ].get("text")
            raise ReportError(f"evaluating a script in {self.page} failed: {detail}")
        return answer.get("result", {}).get("value")

    def screenshot(self, out: Path, *, full_page: bool = True) -> Path:
        """A PNG of the page (the whole page, up to MAX_SHOT_HEIGHT pixels, unless ``full_page`` is False)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics").get("cssContentSize") or {}
            width = max(int(size.get("width") or 0), self._browser.width)
            height = min(max(int(size.get("height") or 0), 1), MAX_SHOT_HEIGHT)
            params.update(
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            )
        return _save(out, self.call("Page.captureScreenshot", params), "screenshot")

    def print_pdf(self, out: Path) -> Path:
        """The page printed to PDF as the print dialog would (print CSS, no background graphics)."""
        params = {"printBackground": False, "preferCSSPageSize": True}
        return _save(out, self.call("Page.printToPDF", params), "PDF")


def _living(pgid: int) -> list[int]:
    """Processes of the group ``pgid`` still running (killed ones may wait as zombies for a reaper)."""
    found = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
    return found


def _wait_dead(pgid: int, seconds: float) -> None:
    """Wait (bounded) until every process of the group ``pgid`` has died, so its profile can go."""
    deadline = time.monotonic() + seconds
    while _living(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _save(out: Path, answer: dict[str, Any], what: str) -> Path:
    data = answer.get("data")
    if not isinstance(data, str) or not data:
        raise ReportError(f"chromium returned no {what} data; run again, or check {LOG_NAME} in the profile")
    try:
        Path(out).write_bytes(base64.b64decode(data))
    except OSError as exc:
        raise ReportError(f"cannot write {out}: {exc.strerror or exc}; check the folder") from None
    return Path(out)


class Browser:
    """A headless Chromium with its profile in ``profile`` (created; left for the caller to remove)."""

    def __init__(
        self,
        profile: Path,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        width: int = 1200,
        height: int = 900,
        binary: str | None = None,
    ) -> None:
        self.profile = Path(profile)
        self.timeout = timeout
        self.width = width
        self.height = height
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None
        self._to: int | None = None
        self._from: int | None = None
        self._buffer = bytearray()
        self._scanned = 0
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self._tabs: dict[str, Tab] = {}

    def __enter__(self) -> Browser:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start Chromium and check it answers; ReportError when it is missing or does not."""
        binary = self.binary or require_chromium()
        self.profile.mkdir(parents=True, exist_ok=True)
        child_in, self._to = os.pipe()
        self._from, child_out = os.pipe()
        child_in, child_out = _high(child_in), _high(child_out)

        def _map_pipes() -> None:  # in the child: the protocol's fixed descriptors
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        argv = [
            binary,
            *_FLAGS,
            f"--user-data-dir={self.profile}",
            f"--window-size={self.width},{self.height}",
            "about:blank",
        ]
        try:
            with (self.profile / LOG_NAME).open("wb") as log:
                self.process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    preexec_fn=_map_pipes,  # noqa: PLW1509 (the child only calls dup2, then exec)
                    close_fds=False,  # our descriptors are close-on-exec (PEP 446); 3 and 4 are not
                    start_new_session=True,
                )
        except OSError as exc:
            self._close_pipes()
            raise ReportError(f"cannot start {binary}: {exc.strerror or exc}; reinstall chromium") from None
        finally:
            os.close(child_in)
            os.close(child_out)
        self.call("Browser.getVersion")

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        """Send one command and wait (at most ``timeout`` s) for its answer; returns its result."""
        if self._to is None:
            raise ReportError(f"chromium is not running; cannot send {method}")
        self._next_id += 1
        ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        payload = json.dumps(message).encode() + b"\0"
        deadline = time.monotonic() + self.timeout
        try:
            while payload:
                payload = payload[os.write(self._to, payload) :]
        except OSError:
            self._fail(f"chromium stopped before {method}")
        while True:
            answer = self._receive(deadline, method)
            if answer.get("id") == ident:
                if "error" in answer:
                    self._fail(f"chromium refused {method}: {answer['error'].get('message')}", kill=False)
                return dict(answer.get("result") or {})

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        assert self._from is not None
        while (end := self._buffer.find(b"\0", self._scanned)) < 0:
            self._scanned = len(self._buffer)  # a screenshot arrives in many reads: scan each byte once
            left = deadline - time.monotonic()
            ready = select.select([self._from], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                self._fail(f"chromium did not answer {waiting_for} within {self.timeout:g} s")
            chunk = os.read(self._from, 1 << 20)
            if not chunk:
                self._fail(f"chromium exited while waiting for {waiting_for}")
            self._buffer += chunk
        message = json.loads(bytes(self._buffer[:end]))
        del self._buffer[: end + 1]
        self._scanned = 0
        if "method" in message:
            self._event(message)
        return dict(message)

    def _event(self, message: dict[str, Any]) -> None:
        tab = self._tabs.get(str(message.get("sessionId")))
        params = message.get("params") or {}
        if message["method"] == "Network.requestWillBeSent" and tab is not None:
            tab.requests.append(str(params.get("request", {}).get("url")))
        elif message["method"] in ("Inspector.targetCrashed", "Target.targetCrashed"):
            self._fail("the page crashed in chromium")
        self._events.append(message)

    def open(self, page: Path) -> Tab:
        """Open the local file ``page`` in a new tab and wait until it has loaded (images included)."""
        path = Path(page).resolve()
        if not path.is_file():
            raise ReportError(f"{page} does not exist; write the HTML first (python -m reports html FILE.md)")
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        tab = Tab(self, session, path)
        self._tabs[session] = tab
        for domain in ("Page.enable", "Network.enable", "Runtime.enable"):
            tab.call(domain)
        self._events.clear()
        navigated = tab.call("Page.navigate", {"url": path.as_uri()})
        if navigated.get("errorText"):
            raise ReportError(f"chromium could not open {path}: {navigated['errorText']}")
        deadline = time.monotonic() + self.timeout
        while not any(
            e["method"] == "Page.loadEventFired" and e.get("sessionId") == session for e in self._events
        ):
            self._receive(deadline, f"the page {path.name} to load")
        return tab

    def _fail(self, message: str, *, kill: bool = True) -> NoReturn:
        if kill:
            self._kill()
        raise ReportError(f"{message}; see {self.profile / LOG_NAME}, or run again with a longer timeout")

    def _kill(self) -> None:
        process = self.process
        if process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
            _wait_dead(process.pid, 3.0)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for fd in (self._to, self._from):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._to = self._from = None

    def close(self) -> None:
        """Ask Chromium to quit, wait a little, then stop its whole process group."""
        process = self.process
        if process is None:
            return
        if process.poll() is None and self._to is not None:
            with contextlib.suppress(ReportError, OSError):
                os.write(self._to, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self._kill()  # the group: helpers Chromium left behind, or Chromium itself if it did not quit
        self.process = None


@contextlib.contextmanager
def _one_page(page: Path, timeout: float) -> Iterator[Tab]:
    binary = require_chromium()
    with (
        tempfile.TemporaryDirectory(prefix="report-browser-") as profile,
        Browser(Path(profile), timeout=timeout, binary=binary) as browser,
    ):
        yield browser.open(page)


def screenshot(page: Path, out: Path, *, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Write a full-page PNG of the local HTML file ``page`` to ``out``; returns ``out``."""
    with _one_page(page, timeout) as tab:
        return tab.screenshot(out)


def print_pdf(page: Path, out: Path, *, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Print the local HTML file ``page`` to the PDF ``out`` (print CSS, A4); returns ``out``."""
    with _one_page(page, timeout) as tab:
        return tab.print_pdf(out)


def page_shot_name(page: Path) -> Path:
    """Where the screenshot of ``page`` goes: ``<stem>-page.png`` beside it (plots never end so)."""
    return Path(page).with_name(f"{Path(page).stem}-page.png")


def snapshot_pages(
    pages: list[Path], *, shots: bool = True, pdfs: bool = False, timeout: float = DEFAULT_TIMEOUT
) -> list[Path]:
    """Screenshot (``<stem>-page.png``) and/or print (``<stem>.pdf``) each page; returns the files written."""
    binary = require_chromium()
    written: list[Path] = []
    with (
        tempfile.TemporaryDirectory(prefix="report-browser-") as profile,
        Browser(Path(profile), timeout=timeout, binary=binary) as browser,
    ):
        for page in pages:
            tab = browser.open(page)
            if shots:
                written.append(tab.screenshot(page_shot_name(page)))
            if pdfs:
                written.append(tab.print_pdf(Path(page).with_suffix(".pdf")))
    return written
