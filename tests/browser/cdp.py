"""Drive Debian's headless Chromium over the DevTools protocol, on a pipe (no port, no websocket).

``--remote-debugging-pipe`` makes Chromium read protocol commands from fd 3 and write replies and
events to fd 4, each message a JSON object followed by a NUL byte. This module opens one page,
records what a test needs to judge a report as a reader's browser sees it:

- every network request the page makes (``Network.requestWillBeSent``),
- console messages, uncaught exceptions and browser log entries (CSP violations land there),
- JavaScript dialogs (``alert()``: the sign of an XSS that ran),

and lets the test evaluate JavaScript, move the mouse and take a full-page screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageLog:
    """What happened in the page since it was opened."""

    requests: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)  # (level, text)
    exceptions: list[str] = field(default_factory=list)
    log_entries: list[tuple[str, str, str]] = field(default_factory=list)  # (level, source, text)
    dialogs: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error-level browser log entries, as text."""
        out = [f"console.{lvl}: {text}" for lvl, text in self.console if lvl in ("error", "assert")]
        out += [f"exception: {e}" for e in self.exceptions]
        out += [f"log[{src}] {lvl}: {text}" for lvl, src, text in self.log_entries if lvl == "error"]
        return out


class CDPError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, chromium: str, *, width: int = 1280, height: int = 900) -> None:
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="lh-chromium-")
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # Move the child's ends far from 3 and 4 first, so the dup2 calls below cannot clobber them.
        hi_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 100)
        hi_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 100)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def child_fds() -> None:
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            [
                chromium,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-pipe",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child_fds,  # noqa: PLW1509 - single-threaded test process, only dup2
            pass_fds=(3, 4),
            start_new_session=True,
        )
        os.close(hi_r)
        os.close(hi_w)
        self._out = os.fdopen(to_browser_w, "wb", buffering=0)
        self._in = os.fdopen(from_browser_r, "rb", buffering=0)
        self._next_id = 0
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.log = PageLog()
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = ""
        self._open_page()

    # --- protocol plumbing -----------------------------------------------------------------------

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = self._in.read(65536)
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        q = self._replies.get(msg["id"])
                    if q is not None:
                        q.put(msg)
                else:
                    self._on_event(msg)

    def _on_event(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method", ""), msg.get("params", {})
        if method == "Network.requestWillBeSent":
            self.log.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.log.console.append((params.get("type", ""), text))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception", {})
            self.log.exceptions.append(str(exc.get("description") or details.get("text")))
        elif method == "Log.entryAdded":
            e = params.get("entry", {})
            self.log.log_entries.append((e.get("level", ""), e.get("source", ""), e.get("text", "")))
        elif method == "Page.javascriptDialogOpening":
            self.log.dialogs.append(f"{params.get('type')}: {params.get('message')}")
            # Dismiss it from the reader thread's side: a dialog blocks the page until answered.
            threading.Thread(
                target=self.send, args=("Page.handleJavaScriptDialog", {"accept": True}), daemon=True
            ).start()
        self._events.put(msg)

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: bool = True,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply; raises CDPError on a protocol error."""
        with self._lock:
            self._next_id += 1
            mid = self._next_id
            q: queue.Queue[dict[str, Any]] = queue.Queue()
            self._replies[mid] = q
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self._out.write(json.dumps(msg).encode() + b"\0")
        try:
            reply = q.get(timeout=timeout)
        except queue.Empty:
            raise CDPError(f"{method}: no reply in {timeout} s") from None
        finally:
            with self._lock:
                self._replies.pop(mid, None)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError(f"no {method} event in {timeout} s")
            try:
                msg = self._events.get(timeout=left)
            except queue.Empty:
                continue
            if msg.get("method") == method:
                return msg

    def _open_page(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False
        )
        self.session = attached["sessionId"]
        for domain in ("Network", "Runtime", "Log", "Page"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )

    # --- what tests use ------------------------------------------------------------------------------

    def open(self, path: Path, settle: float = 0.7) -> None:
        """Load a local file and wait for its load event, then a little for late requests/errors.

        ``log`` starts afresh: it holds what this page load did.
        """
        self.log = PageLog()
        while not self._events.empty():
            self._events.get_nowait()
        self.send("Page.navigate", {"url": path.resolve().as_uri()})
        self.wait_event("Page.loadEventFired")
        time.sleep(settle)

    def eval(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its JSON value."""
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in res:
            raise CDPError(f"evaluate failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def mouse(self, kind: str, x: float, y: float) -> None:
        params = {
            "type": kind,
            "x": x,
            "y": y,
            "button": "left" if kind != "mouseMoved" else "none",
            "clickCount": 1 if kind != "mouseMoved" else 0,
        }
        self.send("Input.dispatchMouseEvent", params)

    def screenshot(self, out: Path, *, full_page: bool = True) -> Path:
        """Save a PNG of the page (its whole height by default) and return the path."""
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            height = int(metrics["cssContentSize"]["height"])
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": self.width, "height": min(height, 16000), "deviceScaleFactor": 1, "mobile": False},
            )
            time.sleep(0.2)
        shot = self.send("Page.captureScreenshot", {"format": "png"})
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        if full_page:
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
            )
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", session=False, timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait()
        with contextlib.suppress(OSError):
            self._out.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def browser(chromium: str, **kw: int) -> Iterator[Browser]:
    b = Browser(chromium, **kw)
    try:
        yield b
    finally:
        b.close()
