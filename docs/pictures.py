#!/usr/bin/env python3
"""Regenerate the pictures in docs/img/ from a real run: today, the quickstart's drift report.

    .venv/bin/python docs/pictures.py              # rewrite docs/img/drift-report.png
    .venv/bin/python docs/pictures.py --keep       # and keep the temporary project (its path is printed)

What it does: copies examples/quickstart to a temporary directory (the repository's copy is
not touched), runs its `demo.py` there — the same end-to-end run as `make demo`: train, gate,
register, serve one prediction, check drift — and screenshots the drift report it wrote
(`.mlprism/reports/drift/latest.html`) with headless Chromium, cropped to the summary, the
charts and the top of the table. The PNG is then shrunk with `pngquant` and/or `optipng`
when they are installed (the picture is fine without them, only larger).

Needs Chromium (Debian: `apt-get install chromium`; or set `CHROMIUM=/path/to/chrome`).
Chromium is started with no network, no first-run, no sync and a throw-away profile, and is
driven over `--remote-debugging-pipe` (the DevTools protocol on two pipes: nothing listens on
a port), so the crop is exact without an image library.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
QUICKSTART = ROOT / "examples" / "quickstart"
PICTURE = DOCS / "img" / "drift-report.png"
WIDTH = 1040                        # CSS pixels of the browser window
TABLE_ROWS = 9                      # rows of the column table kept below the charts
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--hide-scrollbars", "--mute-audio",
    "--force-color-profile=srgb", "--force-device-scale-factor=1",
]

#: the region to keep: from the top of the page to the bottom of the TABLE_ROWS-th table row
CLIP_JS = f"""(() => {{
  const rows = document.querySelectorAll('tbody tr');
  const last = rows[Math.min(rows.length, {TABLE_ROWS}) - 1];
  const bottom = last ? last.getBoundingClientRect().bottom : document.body.scrollHeight;
  return JSON.stringify({{width: document.documentElement.clientWidth, height: Math.ceil(bottom + 1)}});
}})()"""


def find_chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "chrome"):
        if name and (path := shutil.which(name)):
            return path
    raise SystemExit("pictures: Chromium not found; install it (Debian: apt-get install chromium) "
                     "or set CHROMIUM=/path/to/chrome")


def run_quickstart(workdir: Path) -> Path:
    """The quickstart end to end in a copy; the path of the drift report it wrote."""
    project = workdir / "quickstart"
    shutil.copytree(QUICKSTART, project, ignore=shutil.ignore_patterns(
        ".mlprism", "__pycache__", "models", "metrics", "train.csv", "test.csv", "generated"))
    print(f"pictures: running the quickstart in {project}", flush=True)
    proc = subprocess.run([sys.executable, str(project / "demo.py")], cwd=project, text=True,
                          capture_output=True, timeout=600)
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout[-4000:])
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"pictures: the quickstart failed (exit {proc.returncode})")
    report = project / ".mlprism" / "reports" / "drift" / "latest.html"
    if not report.is_file():
        raise SystemExit(f"pictures: the quickstart wrote no drift report at {report}")
    return report


class DevTools:
    """The Chrome DevTools protocol over --remote-debugging-pipe: JSON messages ending in NUL."""

    def __init__(self, chromium: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        def child_fds() -> None:
            # Chromium reads commands from fd 3 and writes replies to fd 4. dup2 makes them
            # inheritable; every other descriptor of ours is non-inheritable (PEP 446).
            read_end, write_end = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},900",
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_fds, close_fds=False)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._from_browser], [], [], remaining)[0]:
                raise SystemExit("pictures: Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise SystemExit(f"pictures: Chromium exited (code {self.proc.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, timeout: float = 60, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise SystemExit(f"pictures: {method} failed: {reply['error']}")
                return reply.get("result", {})

    def wait_event(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self._read_message(deadline).get("method") != method:
            pass

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except SystemExit:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def screenshot(chromium: str, page: Path, out: Path, profile: Path) -> None:
    tools = DevTools(chromium, profile)
    try:
        targets = tools.call("Target.getTargets")["targetInfos"]
        page_id = next(t["targetId"] for t in targets if t["type"] == "page")
        tools.session = tools.call("Target.attachToTarget", targetId=page_id, flatten=True)["sessionId"]
        tools.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=900, deviceScaleFactor=1,
                   mobile=False)
        tools.call("Page.enable")
        tools.call("Page.navigate", url=page.resolve().as_uri())
        tools.wait_event("Page.loadEventFired")
        box = json.loads(tools.call("Runtime.evaluate", expression=CLIP_JS, returnByValue=True)["result"]["value"])
        shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": box["width"], "height": box["height"], "scale": 1})
    finally:
        tools.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))


def shrink(png: Path) -> None:
    """Lossy palette (pngquant, visually identical for a screenshot) then lossless (optipng), when installed."""
    if shutil.which("pngquant"):
        subprocess.run(["pngquant", "--force", "--skip-if-larger", "--strip", "--speed", "1",
                        "--quality", "85-100", "--output", str(png), str(png)], check=False)
    if shutil.which("optipng"):
        subprocess.run(["optipng", "-quiet", "-o5", "-strip", "all", str(png)], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PICTURE, help="where to write the PNG")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    workdir = Path(tempfile.mkdtemp(prefix="mlprism-pictures-"))
    try:
        report = run_quickstart(workdir)
        screenshot(chromium, report, args.out, workdir / "chromium-profile")
        shrink(args.out)
    finally:
        if args.keep:
            print(f"pictures: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"pictures: wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
