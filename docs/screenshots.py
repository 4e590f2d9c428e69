"""Look at docs/chapter.html as a reader would: headless Chromium, offline, clicking the tabs.

    python docs/screenshots.py     # writes docs/images/chapter-*.png (Debian: apt-get install chromium)

For each shot: open the page in a fresh profile, click a tab button with the mouse, check that every
listing group switched (or, lacking that framework, shows its first tab), that the choice survives a
reload and that every image loaded; then scroll to a section and capture the window. Last, with
JavaScript off, every listing must be visible. Chromium's own ``--screenshot`` flag draws a blank
page when the URL has a #fragment, so this drives Chromium over the DevTools protocol on a pipe
(stdlib only).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
PAGE = (DOCS / "chapter.html").as_uri()
WIDTH, HEIGHT = 1100, 1400
# (file name, tab to click, section to show)
SHOTS = (
    ("chapter-tensorflow.png", "tensorflow", "losses"),
    ("chapter-jax.png", "jax", "training-one-step-in-each-framework"),
    ("chapter-results.jpg", "torch", "results"),  # photos: JPEG keeps it small
)
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
    "--remote-debugging-pipe",
)

# What the page shows now, as the reader sees it.
STATE_JS = """JSON.stringify({
  groups: [...document.querySelectorAll(".tabs")].map(g => ({
    tabs: [...g.querySelectorAll(".panel")].map(p => p.dataset.tab),
    visible: [...g.querySelectorAll(".panel")].filter(p => p.offsetParent !== null).map(p => p.dataset.tab),
    active: [...g.querySelectorAll(".tabbar .tab.active")].map(b => b.dataset.tab)})),
  switch: [...document.querySelectorAll(".switch .tab.active")].map(b => b.dataset.tab),
  images: [...document.images].map(i => [i.getAttribute("src"), i.complete && i.naturalWidth > 0]),
  wide_tables: [...document.querySelectorAll(".table")].filter(t => t.scrollWidth > t.clientWidth)
    .map(t => t.querySelector("th").textContent),
  listings: document.querySelectorAll("pre").length,
  visible_listings: [...document.querySelectorAll("pre")].filter(p => p.offsetParent !== null).length})"""


class Chromium:
    """One headless Chromium and one page, spoken to in DevTools protocol messages on fds 3 and 4."""

    def __init__(self, binary: str, profile: str):
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()

        def wire_pipes():  # Chromium reads commands on fd 3 and answers on fd 4
            os.dup2(to_chrome, 3)
            os.dup2(from_chrome, 4)

        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        preexec_fn=wire_pipes, pass_fds=(3, 4))
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer, self._events, self._next_id, self.session = b"", [], 0, None

    def call(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_for(self, event: str, timeout: float = 30.0) -> None:
        while not any(e.get("method") == event for e in self._events):
            self._events.append(self._read(timeout))
        self._events.clear()

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            if not select.select([self._in], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium exited")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        self.load(url)

    def load(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre, as a reader clicks (not element.click())."""
        box = json.loads(self.evaluate(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            e.scrollIntoView({{block: "center"}}); const r = e.getBoundingClientRect();
            return JSON.stringify([r.x + r.width / 2, r.y + r.height / 2]); }})()"""))
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent",
                      {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1})

    def state(self) -> dict:
        return json.loads(self.evaluate(STATE_JS))

    def screenshot(self, section: str, out: Path) -> None:
        # Below the sticky framework bar, not under it.
        self.evaluate(f"document.getElementById({json.dumps(section)}).scrollIntoView(); window.scrollBy(0, -56)")
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        image = {"format": "jpeg", "quality": 85} if out.suffix == ".jpg" else {"format": "png"}
        data = self.call("Page.captureScreenshot", image)["data"]
        out.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def problems(state: dict, tab: str) -> list[str]:
    """What a reader would find wrong after choosing ``tab``."""
    found = []
    for k, group in enumerate(state["groups"]):
        expected = tab if tab in group["tabs"] else group["tabs"][0]
        if group["visible"] != [expected] or group["active"] != [expected]:
            found.append(f"tab group {k} shows {group['visible']} (button {group['active']}), expected {expected}")
    if state["switch"] != [tab]:
        found.append(f"the framework bar highlights {state['switch']}, expected {tab}")
    found += [f"image {src} did not load" for src, loaded in state["images"] if not loaded]
    found += [f"the table starting {first!r} is wider than the page" for first in state["wide_tables"]]
    return found


@contextlib.contextmanager
def fresh_browser(binary: str):
    """A Chromium with a new, empty profile (no remembered tab), removed afterwards."""
    profile = tempfile.mkdtemp(prefix="chapter-shot-")
    browser = Chromium(binary, profile)
    try:
        yield browser
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)


def shoot(binary: str, name: str, tab: str, section: str) -> list[str]:
    with fresh_browser(binary) as browser:
        browser.open(PAGE)
        found = problems(browser.state(), "torch")  # a new reader starts on PyTorch
        browser.click(f'.tabs .tabbar .tab[data-tab="{tab}"]')
        found += problems(browser.state(), tab)
        browser.load(PAGE)  # the choice is remembered
        found += [f"after a reload: {p}" for p in problems(browser.state(), tab)]
        browser.screenshot(section, DOCS / "images" / name)
        state = browser.state()
        print(f"{name}: clicked {tab}; checked {len(state['groups'])} tab groups, "
              f"{sum(ok for _, ok in state['images'])}/{len(state['images'])} images loaded")
        return found


def without_javascript(binary: str) -> list[str]:
    """With JavaScript off there are no tabs: every listing shows, under its framework's name."""
    with fresh_browser(binary) as browser:
        browser.open("about:blank")
        browser.call("Emulation.setScriptExecutionDisabled", {"value": True})
        browser.load(PAGE)
        state = browser.state()
        print(f"without JavaScript: {state['visible_listings']} of {state['listings']} listings visible")
        return [] if state["visible_listings"] == state["listings"] else ["without JavaScript some listings are hidden"]


def main() -> int:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        print("screenshots: no chromium here (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    found = []
    for name, tab, section in SHOTS:
        found += shoot(binary, name, tab, section)
    found += without_javascript(binary)
    for problem in found:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
