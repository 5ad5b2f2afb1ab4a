"""Log before you tell, under kill -9: every result the station told the line about is in the result log
after the process was killed at a random moment, 20 times over the same database."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from station.core.results import ResultStore

CHILD = Path(__file__).with_name("durability_child.py")
REPO = Path(__file__).resolve().parents[1]


def _run_and_kill(folder: Path, after_s: float) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, str(CHILD), str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, text=True)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            if line.startswith("started"):
                started.set()
            else:
                lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started.wait(30)
    time.sleep(after_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    reader.join(10)
    proc.stdout.close()
    # a line cut by the kill was not told in full: only whole lines count as told
    return [line.split()[0] for line in lines if line.endswith("\n") and len(line.split()) == 2]


@pytest.mark.slow  # about 25-35 s: 20 starts of the live line
def test_no_told_result_is_lost_over_20_kills(tmp_path):
    rng = random.Random(19)
    told: list[str] = []
    for _ in range(20):
        told += _run_and_kill(tmp_path, rng.uniform(0.05, 0.8))
    store = ResultStore(f"sqlite:///{tmp_path / 'results.db'}")  # moves a spool left behind into the database
    assert store.close()
    with sqlite3.connect(tmp_path / "results.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        uids = {row[0] for row in conn.execute("SELECT uid FROM inspections")}
    assert len(told) >= 100, "the line hardly ran: the test proves nothing"
    missing = [uid for uid in told if uid not in uids]
    assert missing == [], f"{len(missing)} of {len(told)} told results are not in the result log"
