"""`make demo`: the quickstart end to end on the local target, in well under two minutes.

1. writes the data if it is missing (scikit-learn's bundled breast-cancer set; nothing is downloaded);
2. `mlprism run pipeline.yaml`: prepare -> train -> evaluate (gate) -> register;
3. promotes the first version to production if nothing is there yet;
4. `mlprism serve`: one prediction over real HTTP on a free loopback port, then stops the server;
5. `mlprism monitor`: the drift check (data/live.csv is drifted on purpose) and its report;
6. prints where to look next.

Run it again: everything is cached and it says so.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEC = "pipeline.yaml"
MODEL = "cancer"


def mlprism_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "mlprism"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mlprism")
    return [found] if found else [sys.executable, "-m", "mlprism"]


MLPRISM = mlprism_cmd()


def banner(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def mlprism(*args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess[str]:
    print(f"$ mlprism {' '.join(args)}", flush=True)
    proc = subprocess.run([*MLPRISM, *args], cwd=HERE, text=True, capture_output=capture)
    if check and proc.returncode != 0:
        if capture:
            sys.stdout.write(proc.stdout)
            sys.stderr.write(proc.stderr)
        sys.exit(f"demo: `mlprism {' '.join(args)}` failed with exit code {proc.returncode}")
    return proc


def ensure_data() -> None:
    if (HERE / "data" / "raw.csv").exists() and (HERE / "data" / "live.csv").exists():
        return
    banner("writing the data (scikit-learn's bundled breast-cancer set)")
    subprocess.run([sys.executable, str(HERE / "make_data.py")], check=True)


def run_pipeline() -> bool:
    """`mlprism run`, its output streamed; True when every step was already up to date."""
    print(f"$ mlprism run {SPEC}", flush=True)
    proc = subprocess.Popen([*MLPRISM, "run", SPEC], cwd=HERE, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    last = ""
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        last = line if line.startswith("run ") else last
    if proc.wait() != 0:
        sys.exit(f"demo: `mlprism run {SPEC}` failed with exit code {proc.returncode}")
    return "everything up to date" in last


def ensure_production() -> None:
    shown = mlprism("models", "show", f"{MODEL}@production", "--json", check=False, capture=True)
    if shown.returncode == 0:
        version = json.loads(shown.stdout)["version"]
        print(f"{MODEL}@production is version {version}")
        return
    latest = json.loads(mlprism("models", "show", f"{MODEL}@latest", "--json", capture=True).stdout)["version"]
    mlprism("models", "promote", MODEL, str(latest), "--stage", "production")


def one_prediction() -> None:
    with (HERE / "data" / "live.csv").open(newline="") as fh:
        row = {k: float(v) for k, v in next(csv.DictReader(fh)).items()}
    print(f"$ mlprism serve {SPEC} --port 0", flush=True)
    server = subprocess.Popen([*MLPRISM, "serve", SPEC, "--port", "0"], cwd=HERE, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 90
        url = None
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            print(f"  {line.rstrip()}")
            if " on http://" in line:
                url = line.split(" on ", 1)[1].split()[0]
                break
        if url is None:
            sys.exit("demo: the server did not start")
        req = urllib.request.Request(f"{url}/predict", data=json.dumps({"rows": [row]}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = json.load(resp)
        label = {0: "malignant", 1: "benign"}.get(answer["predictions"][0], answer["predictions"][0])
        proba = answer.get("probabilities", [[None]])[0]
        print(f"POST {url}/predict  (the first row of data/live.csv, {len(row)} features)")
        print(f"  -> prediction {answer['predictions'][0]} ({label}), probabilities {proba}, "
              f"model {answer['model']['name']} v{answer['model']['version']}")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    print("  server stopped")


def main() -> int:
    t0 = time.monotonic()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    ensure_data()
    banner("run the pipeline: prepare -> train -> evaluate (gate) -> register")
    up_to_date = run_pipeline()
    banner("make sure a version is in production")
    ensure_production()
    banner("serve it and ask for one prediction over HTTP")
    one_prediction()
    banner("check data drift (data/live.csv was drifted on purpose)")
    monitor = mlprism("monitor", SPEC, check=False)
    if monitor.returncode not in (0, 1):
        sys.exit(f"demo: `mlprism monitor` failed with exit code {monitor.returncode}")
    if monitor.returncode == 1:
        print("(drift found, as intended: exit code 1 is how `mlprism monitor` reports drift to a scheduler)")
    report = HERE / ".mlprism" / "reports" / "drift" / "latest.html"
    if up_to_date:
        banner("everything is up to date: nothing was retrained (change data/raw.csv, src/ or params to rerun)")
    banner(f"done in {time.monotonic() - t0:.0f}s. Where to look next:")
    setup = []
    activate = Path(sys.executable).parent / "activate"
    on_path = shutil.which("mlprism")
    if activate.is_file() and (on_path is None or Path(on_path).resolve() != Path(MLPRISM[0]).resolve()):
        setup.append(f"source {os.path.relpath(activate)}")
    if os.path.relpath(HERE) != ".":
        setup.append(f"cd {os.path.relpath(HERE)}")
    if setup:
        print(f"  {' && '.join(setup)}")
    steps = [
        ("mlprism runs list", "every run: params, metrics, what was cached"),
        (f"mlprism models list {MODEL}", "versions, stages, metrics, lineage"),
        (f"mlprism models show {MODEL}@production", "one version, with its audit trail"),
        (f"mlprism serve {SPEC}", "then open http://127.0.0.1:8080/docs"),
        (f"open {os.path.relpath(report, HERE)}", "the drift report"),
        (f"mlprism run {SPEC} params.max_depth=1 params.n_estimators=2", "a weaker challenger: the gate stops it"),
    ]
    width = max(len(cmd) for cmd, _ in steps)
    for cmd, what in steps:
        print(f"  {cmd.ljust(width)}  # {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
