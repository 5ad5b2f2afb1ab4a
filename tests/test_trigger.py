"""Triggers and parts: free-run, software trigger (never an image from before the trigger), hold mode (one
verdict per part that stays in view), part IDs and trigger times in the result log, and the integrator's
settings behind the PIN."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from station.core.errors import StationError
from station.core.inspector import Inspector
from station.core.live import LivePipeline
from station.core.recipe import Recipe
from station.core.results import ResultStore
from station.core.settings import make_settings
from station.core.sources import FolderSource, Frame, Source, SourceState
from station.core.spool import decode_row, encode_row
from station.core.trigger import ExternalTrigger, FreeRun, HoldTracker, TriggerMode, gate_from_settings, make_gate
from station.core.workbench.audit import AuditLog
from station.core.workbench.errors import AccessError
from station.core.workbench.roles import PinStore, Session
from station.plc.settings_guard import change_integrator_settings


def frame(image: np.ndarray, at: float | None = None, i: int = 0) -> Frame:
    return Frame(image, i, time.perf_counter() if at is None else at, f"f{i}")


def test_free_run_counts_every_frame_as_a_part():
    gate = FreeRun()
    img = np.zeros((8, 8, 3), np.uint8)
    shots = [gate.admit(frame(img)) for _ in range(3)]
    assert [s.part_id for s in shots] == ["1", "2", "3"] and all(s.origin == "free-run" for s in shots)


def test_a_trigger_takes_the_first_frame_captured_after_it_never_an_older_one():
    gate = ExternalTrigger(TriggerMode.SOFTWARE)
    img = np.zeros((8, 8, 3), np.uint8)
    old = frame(img, at=time.perf_counter() - 1)
    assert gate.admit(old) is None  # no trigger: no part
    shot = gate.fire("A-17")
    assert gate.admit(frame(img, at=shot.at - 0.01)) is None and gate.stale_frames == 1  # captured before it
    got = gate.admit(frame(img, at=shot.at + 0.001))
    assert got is shot and got.part_id == "A-17" and gate.pending == 0
    assert gate.fire().part_id == "1"  # no ID given: counted
    with pytest.raises(StationError, match="part ID"):
        gate.fire("x" * 65)


def test_pending_triggers_are_bounded_and_can_be_cancelled():
    gate = ExternalTrigger(TriggerMode.PLC, max_pending=2)
    a = gate.fire(1, token="a")
    gate.fire(2, token="b")
    with pytest.raises(StationError, match="cannot keep up"):
        gate.fire(3)
    assert gate.cancel("a") and not gate.cancel("a") and gate.pending == 1
    assert a.origin == "plc"
    with pytest.raises(StationError, match="trigger mode"):
        make_gate("sometimes")


def _scene(part: int | None, seed: int = 0) -> np.ndarray:
    """An empty conveyor, or one with part `part` on it (a bright block whose size differs per part)."""
    rng = np.random.default_rng(seed)
    img = np.full((60, 80, 3), 40, np.uint8) + rng.integers(0, 3, (60, 80, 3), dtype=np.uint8)  # sensor noise
    if part is not None:
        img[10:50, 15:35 + 10 * part] = 200
    return img


def test_hold_mode_gives_one_verdict_per_part_and_sees_it_leave():
    gate = HoldTracker(settle_frames=3)
    gate.learn_empty(_scene(None))
    # empty belt, part 1 arrives and stays 10 frames, belt empty, part 2 replaces... part 2 stays, then leaves
    sequence = [None] * 5 + [1] * 10 + [None] * 5 + [2] * 10 + [3] * 10 + [None] * 4
    shots = [gate.admit(frame(_scene(p, seed=i), i=i)) for i, p in enumerate(sequence)]
    fired = [i for i, s in enumerate(shots) if s is not None]
    assert len(fired) == 3  # parts 1, 2, 3: one verdict each, none for the empty belt
    assert [sequence[i] for i in fired] == [1, 2, 3]
    assert [shots[i].part_id for i in fired] == ["1", "2", "3"] and gate.departures == 3
    assert gate.admit(Frame(None, 99, time.perf_counter(), "bad", "bad frame")) is None


def test_hold_mode_without_an_empty_scene_takes_each_still_scene_once():
    gate = HoldTracker(settle_frames=2)
    sequence = [1] * 6 + [2] * 6
    fired = [p for i, p in enumerate(sequence) if gate.admit(frame(_scene(p, seed=i), i=i)) is not None]
    assert fired == [1, 2]


class Still(Source):
    """A live camera showing the same part (with sensor noise) at 100 fps."""

    live = True

    def __init__(self, image: np.ndarray) -> None:
        super().__init__()
        self.image = image
        self.rng = np.random.default_rng(0)

    def read(self):
        time.sleep(0.01)
        noise = self.rng.integers(0, 2, self.image.shape, dtype=np.uint8)
        return self._frame(self.image + noise, f"still #{self._index}")


def test_the_live_line_logs_each_part_with_its_id_and_trigger_time(tmp_path, synthetic_data, synthetic_recipe):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = ResultStore(url, archive="none")
    image = next(FolderSource(synthetic_data / "test").__enter__().read() for _ in range(1)).image
    gate = ExternalTrigger(TriggerMode.SOFTWARE)
    pipeline = LivePipeline(Still(image), Inspector(Recipe.load(synthetic_recipe)), store=store, gate=gate)
    got = []
    pipeline.result_ready.connect(got.append)
    pipeline.start()
    try:
        time.sleep(0.3)
        assert not got  # the camera runs, but nothing was triggered
        before = datetime.now(timezone.utc)
        for name in ("P1", "P2"):
            gate.fire(name)
            deadline = time.monotonic() + 5
            while len(got) < {"P1": 1, "P2": 2}[name]:
                assert time.monotonic() < deadline
                time.sleep(0.01)
    finally:
        pipeline.stop()
        assert store.close()
    assert [g.shot.part_id for g in got] == ["P1", "P2"]
    assert all(g.frame.timestamp >= g.shot.at for g in got)
    assert all(0 < g.timings_ms["trigger_to_result"] < 5000 for g in got)
    with create_engine(url).connect() as conn:
        rows = conn.execute(text("SELECT part_id, trigger_time FROM inspections ORDER BY id")).all()
    assert [r[0] for r in rows] == ["P1", "P2"]
    stamp = datetime.fromisoformat(str(rows[0][1])).replace(tzinfo=timezone.utc)
    assert abs((stamp - before).total_seconds()) < 5


def test_spool_lines_carry_the_part_and_older_lines_still_read():
    row = {"uid": "u", "time": datetime.now(timezone.utc), "station": "s", "frame": "f", "verdict": "OK", "label": "good",
           "score": 1.0, "top_cell": None, "recipe_name": "r", "recipe_hash": "h", "timings": "{}", "image_path": None,
           "message": "", "part_id": "42", "trigger_time": datetime.now(timezone.utc)}
    back = decode_row(encode_row(row))
    assert back["part_id"] == "42" and back["trigger_time"] == row["trigger_time"]
    older = encode_row({**row, "trigger_time": None}).replace(', "part_id": "42", "trigger_time": null', "")
    assert "part_id" not in older
    assert decode_row(older)["part_id"] is None


def test_an_older_result_log_gets_the_part_columns(tmp_path):
    db = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:  # the table as the station made it before part IDs
        conn.execute(text("CREATE TABLE inspections (id INTEGER PRIMARY KEY, uid VARCHAR(32), time DATETIME, "
                          "station VARCHAR(100), frame VARCHAR(500), verdict VARCHAR(10), label VARCHAR(100), "
                          "score FLOAT, top_cell VARCHAR(20), recipe_name VARCHAR(200), recipe_hash VARCHAR(80), "
                          "timings TEXT, image_path VARCHAR(500), message TEXT)"))
        conn.execute(text("INSERT INTO inspections (time, station, frame, verdict, label, recipe_name, recipe_hash, "
                          "timings, message) VALUES ('2024-01-01 00:00:00', 's', 'f', 'OK', 'good', 'r', 'h', '{}', '')"))
    engine.dispose()
    store = ResultStore(f"sqlite:///{db}", archive="none")
    try:
        rows = store.recent()
        assert len(rows) == 1 and rows[0].part_id is None and rows[0].trigger_time is None
    finally:
        assert store.close()


def test_integrator_settings_need_the_pin_and_are_audited(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    session = Session(PinStore(tmp_path / "pin.json", n=2**10, audit=audit), idle_seconds=60)
    session.set_pin("4711", user="anna")
    settings = make_settings()
    with pytest.raises(AccessError, match="engineer mode"):
        change_integrator_settings(session, settings, {"plc_port": 1502})
    session.unlock("4711")
    with pytest.raises(AccessError, match="not an integrator setting"):
        change_integrator_settings(session, settings, {"archive": "all"})
    with pytest.raises(AccessError, match="plc_unit_id"):
        change_integrator_settings(session, settings, {"plc_unit_id": 300})
    new = change_integrator_settings(session, settings, {"plc_port": 1502, "trigger_mode": "plc",
                                                         "plc_recipes": {3: "/recipes/a"}})
    assert (new.plc_port, new.trigger_mode, new.plc_recipes) == (1502, "plc", {3: "/recipes/a"})
    assert settings.plc_port == 5020  # the old settings are left as they were
    changes = [e for e in audit.entries() if e["action"] == "settings_change"]
    assert [(e["what"], e["old"], e["new"], e["user"]) for e in changes][:2] == [
        ("plc_port", 5020, 1502, "anna"), ("trigger_mode", "free-run", "plc", "anna")]
    assert audit.verify().ok


class Belt(Source):
    """A live camera over a belt: `sequence` of scenes (None: empty belt), one frame every 10 ms."""

    live = True

    def __init__(self, sequence: list[int | None]) -> None:
        super().__init__()
        self.sequence = sequence

    def read(self):
        time.sleep(0.01)
        if self._index >= len(self.sequence):
            self.state = SourceState.ENDED
            return None
        return self._frame(_scene(self.sequence[self._index], seed=self._index), f"belt #{self._index}")


def test_hold_mode_on_the_live_line_logs_one_row_per_part(tmp_path, synthetic_recipe):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = ResultStore(url, archive="none")
    gate = make_gate("hold", settle_frames=3)
    gate.learn_empty(_scene(None))
    pipeline = LivePipeline(Belt([None] * 5 + [1] * 15 + [None] * 8 + [2] * 15 + [None] * 5),
                            Inspector(Recipe.load(synthetic_recipe)), store=store, gate=gate)
    done = []
    pipeline.finished.connect(lambda: done.append(1))
    pipeline.start()
    deadline = time.monotonic() + 10
    while not done:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pipeline.stop()
    assert store.close()
    with create_engine(url).connect() as conn:
        rows = conn.execute(text("SELECT part_id FROM inspections ORDER BY id")).all()
    assert [r[0] for r in rows] == ["1", "2"]


def test_the_gate_follows_the_settings():
    assert isinstance(gate_from_settings(make_settings()), FreeRun)
    hold = gate_from_settings(make_settings(trigger_mode="hold", hold_settle_frames=7))
    assert isinstance(hold, HoldTracker) and hold.settle_frames == 7
    assert gate_from_settings(make_settings(trigger_mode="plc")).mode is TriggerMode.PLC
