"""The engineer's workbench core: PIN and roles, audit log, recipe versions, capture, threshold tuner, shadow mode."""

from __future__ import annotations

import errno
import json
import os
import shutil
import types

import numpy as np
import pytest

from station.core.dataset import load_dataset, read_manifest_cells
from station.core.evaluate import evaluate
from station.core.imageio import read_image
from station.core.recipe import Recipe
from station.core.verdict import Verdict, decide
from station.core.workbench import _fs
from station.core.workbench.audit import AuditLog
from station.core.workbench.capture import DatasetFolder
from station.core.workbench.errors import AccessError, AuditError, CaptureError, VersionStoreError
from station.core.workbench.roles import PinStore, Role, Session
from station.core.workbench.shadow import ShadowRun
from station.core.workbench.tuner import clopper_pearson_upper, score_dataset, with_thresholds
from station.core.workbench.versions import VersionStore

ENGINEER = {"role": "engineer", "user": "anna"}
FAST_N = 2**10  # the cheapest scrypt cost the PIN file accepts: tests check the logic, not the cost


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _os_failing_with(code: int):
    """An `os` stand-in for one module whose file opens fail like a read-only or full disk."""

    def failing_open(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return types.SimpleNamespace(**{**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")},
                                    "open": failing_open})


# -- roles ----------------------------------------------------------------------------------------
@pytest.fixture
def session(tmp_path):
    store = PinStore(tmp_path / "pin.json", n=FAST_N)
    clock = FakeClock()
    s = Session(store, idle_seconds=60, clock=clock, free_tries=3, backoff_seconds=5)
    s.set_pin("4711", user="anna")
    return s, clock


def test_operator_by_default_and_right_pin_unlocks(session):
    s, _ = session
    assert s.role is Role.OPERATOR
    with pytest.raises(AccessError, match="needs engineer mode"):
        s.require_engineer("saving a recipe")
    assert s.unlock("4711") is Role.ENGINEER
    assert s.actor == {"role": "engineer", "user": "anna"}
    s.lock()
    assert s.role is Role.OPERATOR and s.actor["role"] == "operator"


def test_wrong_pin_then_backoff_that_grows(session):
    s, clock = session
    with pytest.raises(AccessError, match=r"wrong PIN \(2 tries left"):
        s.unlock("0000")
    with pytest.raises(AccessError, match="1 try left"):
        s.unlock("1234")
    with pytest.raises(AccessError, match="blocked for 5 s"):
        s.unlock("9999")
    with pytest.raises(AccessError, match="try again in 5 s"):
        s.unlock("4711")  # even the right PIN is refused during the back-off
    assert s.role is Role.OPERATOR
    clock.now += 5
    with pytest.raises(AccessError, match="blocked for 10 s"):
        s.unlock("8888")
    clock.now += 10
    assert s.unlock("4711") is Role.ENGINEER  # and the count starts over
    s.lock()
    with pytest.raises(AccessError, match="2 tries left"):
        s.unlock("0000")


def test_idle_auto_lock_with_fake_clock(session):
    s, clock = session
    s.unlock("4711")
    clock.now += 59
    s.touch()
    clock.now += 59
    assert s.role is Role.ENGINEER and s.seconds_until_lock() == pytest.approx(1)
    clock.now += 1
    assert s.role is Role.OPERATOR
    seen = []
    s.subscribe(seen.append)
    s.unlock("4711")
    clock.now += 61
    assert not s.is_engineer and seen == [Role.ENGINEER, Role.OPERATOR]


def test_pin_file_holds_no_pin_and_is_validated(session, tmp_path):
    s, _ = session
    text = (tmp_path / "pin.json").read_text()
    assert "4711" not in text and json.loads(text)["kdf"] == "scrypt"
    # a fresh store reads it back; changing the PIN needs engineer mode
    again = Session(PinStore(tmp_path / "pin.json"), clock=FakeClock())
    with pytest.raises(AccessError, match="needs engineer mode"):
        again.set_pin("1111")
    assert again.unlock("4711") is Role.ENGINEER
    with pytest.raises(AccessError, match="4 to 12 digits"):
        again.set_pin("12a4")
    for bad in ("{not json", json.dumps({"kdf": "md5"}), json.dumps([1])):
        (tmp_path / "bad.json").write_text(bad)
        damaged = PinStore(tmp_path / "bad.json")  # a damaged PIN file locks engineer mode, never opens it
        assert "bad.json" in damaged.problem and "locked" in damaged.problem and not damaged.has_pin
        with pytest.raises(AccessError, match="bad.json"):
            Session(damaged).unlock("4711")
        with pytest.raises(AccessError, match="bad.json"):
            Session(damaged).set_pin("4711")


def test_no_pin_set_is_a_clear_error(tmp_path):
    with pytest.raises(AccessError, match="no engineer PIN"):
        Session(PinStore(tmp_path / "none.json")).unlock("1234")


# -- audit ----------------------------------------------------------------------------------------
def test_audit_entries_are_appended(tmp_path):
    log = AuditLog(tmp_path / "audit" / "audit.jsonl")
    log.record(ENGINEER, "set_thresholds", "recipe demo", {"review": 1.0, "ng": 2.0}, {"review": 1.5, "ng": 2.0})
    log.record({"role": "operator", "user": "operator"}, "note", "x", None, np.float32(3.5))
    entries = log.entries()
    assert [e["action"] for e in entries] == ["set_thresholds", "note"]
    assert entries[0]["user"] == "anna" and entries[0]["old"]["review"] == 1.0 and entries[1]["new"] == 3.5
    assert entries[0]["time"].endswith("+00:00")
    # a torn last line (power cut) is skipped, not fatal
    with open(log.path, "a") as f:
        f.write('{"time": "2026')
    assert len(log.entries()) == 2


def test_audit_full_or_read_only_disk_raises(tmp_path, monkeypatch):
    if os.path.exists("/dev/full"):
        with pytest.raises(AuditError, match="disk is full"):
            AuditLog("/dev/full").record(ENGINEER, "a", "b")
    log = AuditLog(tmp_path / "audit.jsonl")
    monkeypatch.setattr("station.core.workbench.audit.os", _os_failing_with(errno.EROFS))
    with pytest.raises(AuditError, match="read-only.*the change was not made"):
        log.record(ENGINEER, "set_thresholds", "recipe", 1, 2)


# -- versions -------------------------------------------------------------------------------------
def test_versions_save_activate_rollback(synthetic_recipe, tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    store = VersionStore(tmp_path / "store", audit=audit, create=True)
    recipe = Recipe.load(synthetic_recipe)
    v1 = store.save(recipe, ENGINEER, note="first", metrics={"escape_rate": 0.0}, activate=True)
    v1_bytes = (v1.path / "recipe.json").read_bytes()
    review, ng = recipe.thresholds
    tighter = with_thresholds(recipe, review * 0.9, ng)
    v2 = store.save(tighter, ENGINEER, note="tighter")
    assert [v.name for v in store.versions()] == ["v0001", "v0002"]
    assert (v1.path / "recipe.json").read_bytes() == v1_bytes  # never overwritten
    assert v1.active and not v2.active and v1.metrics == {"escape_rate": 0.0} and v2.note == "tighter"
    assert v2.thresholds == pytest.approx((review * 0.9, ng)) and v2.content_hash != v1.content_hash
    assert store.activate("v0002", ENGINEER).thresholds == pytest.approx((review * 0.9, ng))
    assert store.load_active().content_hash == v2.content_hash
    rolled = store.rollback(ENGINEER)
    assert rolled.content_hash == v1.content_hash and store.active_version() == "v0001"
    with pytest.raises(VersionStoreError, match="no earlier active version"):
        store.rollback(ENGINEER)
    with pytest.raises(AccessError, match="needs engineer mode"):
        store.activate("v0002", {"role": "operator", "user": "operator"})
    v3 = store.save(recipe, ENGINEER)  # the same recipe again is still a new version
    assert v3.name == "v0003" and v3.content_hash == v1.content_hash
    actions = [e["action"] for e in audit.entries()]
    assert actions == ["save_version", "activate_version", "save_version", "activate_version", "rollback",
                       "save_version"]
    switch = audit.entries()[3]
    assert switch["old"]["version"] == "v0001" and switch["new"]["thresholds"][0] == pytest.approx(review * 0.9)
    assert not any(p.name.startswith(".") for p in store.root.iterdir())


def test_vanished_store_is_a_clear_error_and_loses_nothing(synthetic_recipe, tmp_path):
    store = VersionStore(tmp_path / "store", create=True)
    recipe = Recipe.load(synthetic_recipe)
    store.save(recipe, ENGINEER, activate=True)
    running = store.load_active()
    shutil.rmtree(store.root)
    for call in (store.versions, lambda: store.save(recipe, ENGINEER), store.rollback, lambda: store.activate(1)):
        with pytest.raises(VersionStoreError, match="is gone"):
            call()
    assert not store.root.exists()  # nothing was recreated half-way
    assert running.engine is not None and recipe.save(tmp_path / "elsewhere")  # the recipe in memory is intact
    with pytest.raises(VersionStoreError, match="is gone"):
        VersionStore(tmp_path / "never")


def test_failed_audit_means_no_new_version(synthetic_recipe, tmp_path):
    store = VersionStore(tmp_path / "store", audit=AuditLog("/dev/full"), create=True)
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with pytest.raises(AuditError):
        store.save(Recipe.load(synthetic_recipe), ENGINEER)
    assert list(store.root.iterdir()) == []


# -- capture --------------------------------------------------------------------------------------
def test_capture_lossless_with_cell_in_manifest(tmp_path):
    data = DatasetFolder(tmp_path / "ds")
    data.root.mkdir()
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    item = data.capture(frame, "pushed", cell=(2, 7))
    good = data.capture(frame[::-1], "good")
    assert np.array_equal(read_image(item.path), frame) and read_image(good.path).shape == (480, 640, 3)
    assert read_manifest_cells(data.root) == {f"pushed/{item.path.name}": (2, 7)}
    assert data.counts() == {"good": 1, "pushed": 1}
    loaded = load_dataset(data.root)
    assert {(s.label, s.cell) for s in loaded.samples} == {("good", None), ("pushed", (2, 7))}
    with pytest.raises(CaptureError, match="class name"):
        data.capture(frame, "../etc")


def test_relabel_trash_and_restore(tmp_path):
    data = DatasetFolder(tmp_path / "ds")
    data.root.mkdir()
    frame = np.full((40, 30, 3), 7, np.uint8)
    item = data.capture(frame, "pushed", cell=(1, 3))
    moved = data.relabel(item.path, "tilted")
    assert not item.path.exists() and moved.path.parent.name == "tilted"
    assert read_manifest_cells(data.root) == {f"tilted/{moved.path.name}": (1, 3)}
    trashed = data.delete(moved.path)
    assert trashed.is_file() and data.counts() == {"pushed": 0, "tilted": 0}
    assert read_manifest_cells(data.root) == {}
    with pytest.raises(CaptureError, match="not an image of the dataset"):
        data.delete(trashed)  # the trash is not a class
    [entry] = data.trash_items()
    back = data.restore(entry["file"])
    assert back.path == moved.path and np.array_equal(read_image(back.path), frame)
    assert read_manifest_cells(data.root) == {f"tilted/{moved.path.name}": (1, 3)}
    assert data.trash_items() == []
    with pytest.raises(CaptureError, match="not an image of the dataset"):
        data.relabel(tmp_path / "elsewhere.png", "good")


@pytest.mark.parametrize(("code", "reason"), [(errno.EROFS, "read-only"), (errno.ENOSPC, "disk is full")])
def test_capture_onto_a_read_only_or_full_disk_keeps_the_frame(tmp_path, monkeypatch, code, reason):
    data = DatasetFolder(tmp_path / "ds")
    data.root.mkdir()
    frame = np.arange(60 * 50 * 3, dtype=np.uint32).reshape(60, 50, 3).astype(np.uint8)
    first = data.capture(frame, "good")
    manifest_before = (data.root / "manifest.json").read_bytes()
    monkeypatch.setattr(_fs, "os", _os_failing_with(code))
    with pytest.raises(CaptureError, match=f"{reason}.*kept for a retry"):
        data.capture(frame, "missing", cell=(0, 0))
    assert len(data.pending) == 1 and np.array_equal(data.pending[0].frame, frame)
    assert (data.root / "manifest.json").read_bytes() == manifest_before
    assert [p.name for p in (data.root / "good").iterdir()] == [first.path.name]  # nothing half-written
    monkeypatch.undo()
    [stored] = data.retry_pending()
    assert data.pending == [] and np.array_equal(read_image(stored.path), frame)
    assert read_manifest_cells(data.root)[f"missing/{stored.path.name}"] == (0, 0)


def test_capture_into_a_vanished_folder(tmp_path):
    data = DatasetFolder(tmp_path / "gone")
    with pytest.raises(CaptureError, match="is gone"):
        data.capture(np.zeros((8, 8, 3), np.uint8), "good")
    assert len(data.pending) == 1


# -- tuner ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scored(synthetic_recipe, synthetic_data):
    recipe = Recipe.load(synthetic_recipe)
    return recipe, score_dataset(recipe, load_dataset(synthetic_data, "test"))


def test_clopper_pearson_known_values():
    assert clopper_pearson_upper(0, 30) == pytest.approx(0.0950, abs=5e-5)
    assert clopper_pearson_upper(0, 30) == pytest.approx(1 - 0.05 ** (1 / 30), abs=1e-9)
    assert clopper_pearson_upper(1, 30) == pytest.approx(0.1486, abs=5e-5)
    assert clopper_pearson_upper(5, 100) == pytest.approx(0.1023, abs=5e-5)
    assert clopper_pearson_upper(3, 3) == 1.0 and clopper_pearson_upper(0, 0) is None


def test_tuner_rates_equal_station_eval(scored, synthetic_data):
    recipe, s = scored
    good, defect = np.sort(s.scores[s.is_good]), np.sort(s.scores[~s.is_good])
    # besides the recipe's own: thresholds inside the good scores (false rejects) and inside the
    # defect scores (escapes), both with a review band
    pairs = [recipe.thresholds, (float(good[len(good) // 2]), float(defect[len(defect) // 2])),
             (float(defect[len(defect) // 4]), float(defect[3 * len(defect) // 4]))]
    test = load_dataset(synthetic_data, "test")
    for review, ng in pairs:
        ours = s.summary(review, ng)
        theirs = evaluate(with_thresholds(recipe, review, ng), test)
        for key in ("escape_rate", "false_reject_rate", "review_rate", "accuracy", "confusion", "per_class_recall",
                    "auroc", "cell_localization"):
            assert ours[key] == theirs[key], key
        fast = s.rates(review, ng)
        for key in ("escape_rate", "false_reject_rate", "review_rate", "escape_rate_upper"):
            assert fast[key] == ours[key], key
    assert s.summary(*pairs[1])["n_false_rejects"] > 0 and s.summary(*pairs[2])["n_escapes"] > 0
    assert s.summary(*pairs[1])["n_review"] > 0 and s.summary(*pairs[2])["n_review"] > 0


def test_target_escape_rate_places_the_review_threshold(scored):
    _, s = scored
    point = s.review_for_escape_rate(0.10, on="point")
    assert point["met"] and point["escape_rate"] <= 0.10
    # the highest such threshold: the next defect up would make it miss
    defects = np.sort(s.scores[~s.is_good & np.isfinite(s.scores)])
    probe = float(defects[point["allowed_escapes"]]) + 1e-9
    assert s.rates(probe, max(probe, point["ng"]))["escape_rate"] > 0.10
    upper = s.review_for_escape_rate(0.10, on="upper")
    assert upper["met"] and upper["escape_rate_upper"] <= 0.10 and upper["review"] <= point["review"]
    strict = s.review_for_escape_rate(0.01, on="upper")  # 30 defects cannot prove 1%
    assert not strict["met"] and strict["n_escapes"] == 0 and "capture more defect images" in strict["message"]


def test_histograms_roc_and_cell_thresholds(scored):
    recipe, s = scored
    h = s.histograms(bins=20)
    assert len(h["edges"]) == 21 and set(h["counts"]) == {"good", "missing", "pushed", "tilted"}
    assert sum(int(c.sum()) for c in h["counts"].values()) + sum(h["not_scored"].values()) == len(s)
    roc = s.roc()
    assert roc["fpr"][0] == 0 and roc["tpr"][-1] == 1 and np.all(np.diff(roc["tpr"]) >= 0)
    review, ng = s.suggest_cell_thresholds()
    assert review.shape == (9, 3) and np.all(review <= ng)
    # per-cell thresholds equal to the image thresholds give the image verdicts (score = worst cell)
    r0, n0 = recipe.thresholds
    same = s.verdicts(r0, n0, (np.full((9, 3), r0), np.full((9, 3), n0)))
    assert same == s.verdicts(r0, n0)
    s.summary(r0, n0, (review, ng))  # runs through the same summarize


def test_slider_move_is_cheap(scored):
    import time

    _, s = scored
    t0 = time.perf_counter()
    for t in np.linspace(0.5, 5, 200):
        s.rates(float(t), float(t) * 2)
    assert (time.perf_counter() - t0) / 200 < 0.005


# -- shadow ---------------------------------------------------------------------------------------
def test_shadow_changes_are_exactly_between_the_thresholds(scored, synthetic_data):
    recipe, s = scored
    finite = np.sort(s.scores[np.isfinite(s.scores)])
    low, high = float(finite[len(finite) // 4]), float(finite[3 * len(finite) // 4])
    shadow = ShadowRun(with_thresholds(recipe, low, low), with_thresholds(recipe, high, high), keep_frames=3)
    test = load_dataset(synthetic_data, "test")
    changed_ids = []
    for i, sample in enumerate(test.samples):
        change = shadow.observe(read_image(sample.path), frame_id=i, label=sample.label)
        if change is not None:
            changed_ids.append(i)
            assert change.transition == "NG->OK"
    expected = [i for i, score in enumerate(s.scores) if low <= score < high]
    assert changed_ids == expected and len(expected) > 0
    summary = shadow.summary()
    assert summary["frames"] == len(test.samples) and summary["changed"] == len(expected)
    assert summary["transitions"]["NG->OK"] == len(expected)
    assert summary["new_escapes"] == sum(1 for i in expected if s.labels[i] != "good")
    assert sum(c.frame is not None for c in shadow.changes()) == min(3, len(expected))
    assert all(decide(c.candidate_score, high, high) is Verdict.OK for c in shadow.changes())


def test_per_cell_thresholds_are_what_inspection_uses(synthetic_recipe, synthetic_data, tmp_path):
    """Per-cell thresholds saved in a recipe drive the Inspector, and the tuner's figures still
    equal `station eval`'s on the same data and thresholds."""
    from station.core.dataset import load_dataset
    from station.core.evaluate import evaluate
    from station.core.recipe import Recipe
    from station.core.workbench.tuner import score_dataset, with_thresholds

    recipe = Recipe.load(synthetic_recipe)
    data = load_dataset(synthetic_data, "test")
    scored = score_dataset(recipe, data)
    cells = scored.suggest_cell_thresholds()
    review, ng = recipe.thresholds
    tuned = with_thresholds(recipe, review, ng, cell_thresholds=cells)
    tuned.save(tmp_path / "cells")
    reloaded = Recipe.load(tmp_path / "cells")
    assert reloaded.cell_thresholds is not None
    result = evaluate(reloaded, data)
    summary = scored.summary(review, ng, cell_thresholds=cells)
    for key in ("escape_rate", "false_reject_rate", "review_rate", "confusion"):
        assert result[key] == summary[key], key
    # a cell threshold of zero makes every part NG: the Inspector really reads them
    strict = with_thresholds(reloaded, review, ng, cell_thresholds=(cells[0] * 0, cells[1] * 0))
    assert evaluate(strict, data)["per_class_recall"]["good"] == 0.0
