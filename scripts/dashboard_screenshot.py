"""Make docs/images/dashboard_pareto.png: optuna-dashboard's Pareto plot of a real search, in headless Chromium.

A 12-training search over a fake trainer (tests/scripts/fake_train.py, seconds in all) whose size
predictor misses, so that some trainings are measured over the byte budget; optuna-dashboard serves its
study.db and Chromium photographs the study page, where the Pareto front plot greys out infeasible trials.

    .venv/bin/pip install optuna-dashboard; apt-get install chromium
    .venv/bin/python scripts/dashboard_screenshot.py [--out docs/images/dashboard_pareto.png]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACE = f"""
SCRIPT = {str(ROOT / 'tests' / 'scripts' / 'fake_train.py')!r}
BUDGET_BYTES = 7_500
GPUS_PER_TRIAL = 0
FIXED_ENV = {{"FAKE_STEPS": 2}}
def PREDICT_BYTES(env):
    return 5000  # a predictor that misses: trainings over the budget run and are measured infeasible
def space(trial):
    return {{"X": trial.suggest_float("X", 0.0, 5.0)}}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "dashboard_pareto.png")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    dashboard = Path(sys.executable).with_name("optuna-dashboard")
    if browser is None or not dashboard.is_file():
        print("error: needs chromium on PATH and optuna-dashboard in this environment "
              "(apt-get install chromium; pip install optuna-dashboard)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="pgolf-dashboard-"))
    (work / "space.py").write_text(SPACE)
    subprocess.run([sys.executable, "-m", "search.run", str(work / "space.py"), "--results-dir", str(work / "results"),
                    "--name", "dashboard", "--num-samples", "12", "--seed", "1"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(dashboard), f"sqlite:///{work / 'results' / 'dashboard' / 'study.db'}",
                               "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(60):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1300",
                        "--virtual-time-budget=20000", f"--screenshot={args.out}",
                        f"http://127.0.0.1:{port}/dashboard/studies/1"], check=True, capture_output=True, timeout=180)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
