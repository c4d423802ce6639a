"""The report of a committed real run, rendered for real in headless Chromium with networking disabled.

Chromium runs in a fresh network namespace (no interface but a down loopback) and is driven over the
DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ended by NUL on fds 3 and 4), so the
test sees every console message, exception and request. It screenshots the full page and checks that
the summary, the claims table, every scenario's section and the emulated-VM banner are present, that
nothing but the file itself and data: URIs was requested, and that no console error was logged.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bench.dataset import load
from reporting.html import build

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--window-size=1280,900"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (bench/hostsetup.py installs it)")


class DevTools:
    """A minimal DevTools-protocol client over Chromium's pipe (flattened sessions)."""

    def __init__(self, user_data: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        os.set_inheritable(to_chrome_r, True)
        os.set_inheritable(from_chrome_w, True)

        def child_fds() -> None:  # fds 3 and 4 are the protocol's pipe ends (copies first: they may be 3 or 4)
            read_end, write_end = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        argv = ["unshare", "--net", "--", CHROMIUM or "chromium", *FLAGS, f"--user-data-dir={user_data}",
                "about:blank"]
        self.process = subprocess.Popen(argv, preexec_fn=child_fds, pass_fds=(3, 4),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, object]] = []

    def _read_message(self, deadline: float) -> dict[str, object]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium over the DevTools pipe")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the DevTools pipe: {self.process.stderr.read()[-2000:]!r}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, object] | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict[str, object]:
        self._next_id += 1
        message: dict[str, object] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})  # type: ignore[return-value]
            self.events.append(answer)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict[str, object]:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def fixture_run() -> Path:
    """The merged dataset with every area and a failed and a skipped cell (tests/fixtures/runs/README.md)."""
    run = FIXTURES / "quick-20261128"
    assert (run / "run.json").is_file(), f"no committed fixture run {run}"
    return run


def test_report_of_the_fixture_run_renders_offline_in_chromium(tmp_path):
    source = fixture_run()
    data = load(source)
    statuses = {o.outcome.status for o in data.outcomes}
    assert statuses >= {"ok", "failed", "skipped"}, "the fixture must hold a failed and a skipped cell"
    report = build(data, tmp_path / "reports")
    scenarios = sorted({s.scenario for s in data.samples})
    assert {"cpu", "memory", "disk", "network", "startup", "footprint"} <= set(scenarios)

    tools = DevTools(tmp_path / "chromium-profile")
    try:
        target = tools.send("Target.createTarget", {"url": "about:blank"})
        session = str(tools.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
                      ["sessionId"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.send(f"{domain}.enable", session=session)
        tools.send("Page.navigate", {"url": report.as_uri()}, session=session)
        tools.wait_for("Page.loadEventFired", timeout=120)

        def evaluate(expression: str) -> object:
            result = tools.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
            return result["result"].get("value")  # type: ignore[union-attr]

        present = evaluate("JSON.stringify(Array.from(document.querySelectorAll('section[id]')).map(s => s.id))")
        sections = json.loads(str(present))
        assert "summary" in sections and "claims" in sections and "environment" in sections
        for scenario in scenarios:
            assert f"section-{scenario}" in sections, scenario
        assert evaluate("document.querySelectorAll('#summary-table tbody tr').length") >= 5
        assert evaluate("document.querySelectorAll('#claims-table tbody tr').length") >= 1
        banner = str(evaluate("(document.querySelector('.banner.emulated') || {}).innerText || ''"))
        assert "emulated" in banner and "KVM" in banner
        assert "Failed cells" in str(evaluate("document.getElementById('failed-cells').innerText"))
        assert "Skipped" in str(evaluate("document.getElementById('skipped-cells').innerText"))
        broken = evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
        assert broken == 0, "every embedded figure decodes"
        assert "nan" not in str(evaluate("document.body.innerText")).lower().split()

        metrics = tools.send("Page.getLayoutMetrics", session=session)
        size = metrics["cssContentSize"]  # type: ignore[index]
        shot = tools.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                     "clip": {"x": 0, "y": 0, "width": size["width"],
                                                              "height": min(size["height"], 16000), "scale": 1}},
                          session=session, timeout=120)
        png = base64.b64decode(str(shot["data"]))
        assert png.startswith(b"\x89PNG") and len(png) > 50_000
        (tmp_path / "report.png").write_bytes(png)
        print(f"screenshot: {tmp_path / 'report.png'} ({len(png)} bytes, page {size['width']}x{size['height']})")
    finally:
        tools.close()

    errors = [e for e in tools.events
              if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == [], errors
    requested = [e["params"]["request"]["url"] for e in tools.events if e.get("method") == "Network.requestWillBeSent"]
    assert requested and all(url.startswith(("file:", "data:")) for url in requested), requested
