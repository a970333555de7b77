"""Debian chromium driven over the DevTools protocol (no browser download; aiohttp comes with trame)."""
from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def chromium_path():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    def __init__(self, width: int = 1400, height: int = 900):
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.proc = subprocess.Popen(
            [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={self.profile}", f"--remote-debugging-port={self.port}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):  # 60 s: a loaded machine starts it slowly
            try:
                targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list").read())
                page = next(t for t in targets if t["type"] == "page")
                break
            except Exception:
                time.sleep(0.2)
        else:  # no browser left behind
            self.proc.kill()
            self.proc.wait(10)
            shutil.rmtree(self.profile, ignore_errors=True)
            raise RuntimeError("chromium did not start")
        self.loop = asyncio.new_event_loop()
        self._id = 0
        self.ws = self.loop.run_until_complete(self._connect(page["webSocketDebuggerUrl"]))

    async def _connect(self, url):
        import aiohttp
        self.session = aiohttp.ClientSession()
        return await self.session.ws_connect(url, max_msg_size=0)

    async def _call(self, method, params):
        self._id += 1
        my = self._id
        await self.ws.send_str(json.dumps({"id": my, "method": method, "params": params or {}}))
        while True:
            msg = json.loads((await self.ws.receive()).data)
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def call(self, method, params=None):
        return self.loop.run_until_complete(self._call(method, params))

    def goto(self, url):
        self.call("Page.enable")
        self.call("Page.navigate", {"url": url})

    def js(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r.get("result", {}).get("value")

    def wait_for(self, expression, timeout=120, interval=0.5):
        t0 = time.time()
        while time.time() - t0 < timeout:
            try:
                v = self.js(expression)
            except RuntimeError:
                v = None
            if v:
                return v
            time.sleep(interval)
        raise TimeoutError(f"waited {timeout} s for: {expression}")

    def click(self, selector):
        return self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return false; "
                       "e.click(); return true; })()")

    def mouse(self, kind, x, y, buttons=0):
        params = {"type": kind, "x": x, "y": y, "button": "left" if kind != "mouseMoved" else "none",
                  "buttons": buttons, "clickCount": 1 if kind != "mouseMoved" else 0}
        self.call("Input.dispatchMouseEvent", params)

    def type_text(self, selector, text):
        """Focus the element, select its content and type ``text`` as keyboard input (v-model sees input events)."""
        if not self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return false; "
                       "e.focus(); if (e.select) e.select(); return true; })()"):
            return False
        self.call("Input.insertText", {"text": text})
        return True

    def rect(self, selector):
        """The element's bounding box (x, y, width, height) in CSS pixels, or None."""
        r = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null; "
                    "const b = e.getBoundingClientRect(); return [b.x, b.y, b.width, b.height]; })()")
        return tuple(r) if r else None

    def press(self, x, y):
        """A left click at (x, y) with real mouse events (mousedown / mouseup)."""
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, buttons=1)
        self.mouse("mouseReleased", x, y)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return path

    def close(self):
        try:
            self.loop.run_until_complete(self.ws.close())
            self.loop.run_until_complete(self.session.close())
        finally:
            self.proc.terminate()
            self.proc.wait(10)
            shutil.rmtree(self.profile, ignore_errors=True)
