"""Look at the product as a person would: headless Chromium screenshots of optuna-dashboard on a study
and of the study's HTML report.

    apt-get install chromium          # Debian's; not a Python dependency
    .venv/bin/python scripts/screenshot.py --storage sqlite:///studies/digits.db --out screenshots/

Writes dashboard.png and report.png (and report.html) under --out and prints their paths.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1400,1000",
    "--virtual-time-budget=15000",  # let the pages' scripts draw before the shot
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shoot(chromium: str, url: str, png: Path) -> Path:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}", url],
            check=True,
            capture_output=True,
            timeout=120,
        )
    if not png.is_file() or png.stat().st_size == 0:
        raise SystemExit(f"chromium wrote no screenshot of {url}")
    return png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storage", required=True, help="the study's storage URL")
    parser.add_argument("--study-name", help="default: the storage's only study")
    parser.add_argument("--out", default="screenshots", help="folder for the PNGs (default: screenshots)")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from jumpsearch import load_study, write_report

    study = load_study(args.storage, args.study_name)
    report = write_report(study, out / "report.html")
    print(shoot(chromium, report.resolve().as_uri(), out / "report.png"))

    port = free_port()
    command = [sys.executable, "-m", "jumpsearch", "dashboard", "--storage", args.storage, "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as response:
                    summaries = json.loads(response.read())["study_summaries"]
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("optuna-dashboard did not start")
        (study_id,) = [s["study_id"] for s in summaries if s["study_name"] == study.study_name]
        print(shoot(chromium, f"{base}/dashboard/studies/{study_id}", out / "dashboard.png"))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
