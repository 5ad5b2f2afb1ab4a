"""Issue 19, finding 1: no part passed by tampering, and no tampering without a trace.

Each test plays the hostile tester with the station's OS account but without the station key: delete or
replace the PIN file, edit a recipe and recompute its SHA-256, edit a stored version and its pointer,
delete, edit or cut lines of the audit log. Each must be refused or shown, and recorded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from station.core import trust
from station.core.engines import engine_class
from station.core.errors import EngineError, RecipeError
from station.core.grid import CellGrid
from station.core.recipe import RECIPE_FILE, SEAL_FILE, TRUSTED_FILE, Recipe, bundled_hashes
from station.core.resources import resources_dir
from station.core.workbench import AccessError, AuditLog, PinStore, Role, Session, VersionStore
from station.core.workbench.capture import DatasetFolder
from station.core.workbench.errors import VersionStoreError
from station.core.workbench.roles import reset_pin

FAST_N = 2**10
ENGINEER = {"role": "engineer", "user": "engineer"}
ENGINES = ("rt", "rt-attention", "vit")


def _recompute_sha256(folder: Path, **changes) -> None:
    """What an attacker without the key can do: edit recipe.json and recompute its plain content hash."""
    doc = json.loads((folder / RECIPE_FILE).read_text())
    doc.update(changes)
    doc["thresholds"] = {"cell_review": None, "cell_ng": None, **doc["thresholds"]}
    doc["content_hash"] = ""
    dumped = json.loads(json.dumps(doc))
    if dumped["region"].get("pattern") is None:
        dumped["region"].pop("pattern", None)
    digest = hashlib.sha256(json.dumps(dumped, sort_keys=True, separators=(",", ":")).encode())
    digest.update(hashlib.sha256((folder / "arrays.safetensors").read_bytes()).digest())
    doc["content_hash"] = "sha256:" + digest.hexdigest()
    (folder / RECIPE_FILE).write_text(json.dumps(doc, indent=2), encoding="utf-8")


@pytest.fixture
def station(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    store = PinStore(tmp_path / "engineer_pin.json", n=FAST_N, audit=audit)
    session = Session(store, audit=audit)
    session.set_pin("4711")
    return tmp_path, audit, session


def _actions(audit: AuditLog) -> list[str]:
    return [e["action"] for e in audit.entries()]


# -- the PIN -----------------------------------------------------------------------------------------
def test_pin_file_deleted_locks_engineer_mode_and_is_recorded(station):
    root, audit, _ = station
    (root / "engineer_pin.json").unlink()
    store = PinStore(root / "engineer_pin.json", n=FAST_N, audit=audit)
    session = Session(store, audit=audit)
    assert not store.has_pin and store.problem.startswith("PIN file missing") and "station pin --reset" in store.problem
    with pytest.raises(AccessError, match="PIN file missing"):
        session.set_pin("0000")  # no new PIN without the key holder
    with pytest.raises(AccessError, match="PIN file missing"):
        session.unlock("0000")
    assert session.role is Role.OPERATOR and not (root / "engineer_pin.json").exists()
    assert _actions(audit) == ["pin_set", "unlock_refused"] and audit.verify().ok
    # the key holder's reset is the way back, and it is recorded too
    reset_pin(store, "2222", reason="PIN file lost")
    assert Session(PinStore(root / "engineer_pin.json", audit=audit), audit=audit).unlock("2222") is Role.ENGINEER
    assert _actions(audit)[-2:] == ["pin_reset", "unlock"]


def test_pin_file_and_audit_log_deleted_still_locked_by_the_audit_head(station):
    root, audit, _ = station
    (root / "engineer_pin.json").unlink()
    (root / "audit.jsonl").unlink()
    store = PinStore(root / "engineer_pin.json", n=FAST_N, audit=audit)
    with pytest.raises(AccessError, match="PIN file missing"):
        Session(store, audit=audit).set_pin("0000")
    assert "missing" in audit.verify().problem


def test_pin_file_replaced_by_one_made_elsewhere_is_refused(station, tmp_path_factory, monkeypatch):
    root, audit, _ = station
    elsewhere = tmp_path_factory.mktemp("other-station")
    monkeypatch.setenv("STATION_KEY_DIR", str(elsewhere / "key"))
    PinStore(elsewhere / "pin.json", n=FAST_N).set_pin("0000")  # a valid PIN file, sealed by another key
    monkeypatch.undo()
    shutil.copy(elsewhere / "pin.json", root / "engineer_pin.json")
    store = PinStore(root / "engineer_pin.json", audit=audit)
    assert "another station's key" in store.problem and not store.has_pin
    with pytest.raises(AccessError, match="engineer mode locked"):
        Session(store, audit=audit).unlock("0000")
    # a PIN file edited by hand (its seal removed, or its hash swapped) is refused the same way
    doc = json.loads((elsewhere / "pin.json").read_text())
    for seal in ("", json.loads((root / "engineer_pin.json").read_text())["seal"][:-4] + "0000"):
        (root / "engineer_pin.json").write_text(json.dumps({**doc, "seal": seal}))
        assert "engineer mode locked" in PinStore(root / "engineer_pin.json", audit=audit).problem
    assert _actions(audit) == ["pin_set", "unlock_refused"]


def test_an_older_pin_file_put_back_is_refused(station):
    root, audit, session = station
    old = (root / "engineer_pin.json").read_bytes()  # copied while the operator knew the PIN
    session.unlock("4711")
    session.set_pin("8642")  # the engineer changes it
    (root / "engineer_pin.json").write_bytes(old)
    store = PinStore(root / "engineer_pin.json", audit=audit)
    assert "not the one last set" in store.problem
    with pytest.raises(AccessError, match="engineer mode locked"):
        Session(store, audit=audit).unlock("4711")


def test_unlock_failed_pin_and_pin_change_are_recorded(station):
    root, audit, session = station
    with pytest.raises(AccessError, match="wrong PIN"):
        session.unlock("0000")
    session.unlock("4711")
    session.set_pin("5555")
    entries = audit.entries()
    assert [e["action"] for e in entries] == ["pin_set", "unlock_failed", "unlock", "pin_change"]
    assert entries[1]["role"] == "operator" and entries[2]["user"] == "engineer" and entries[3]["role"] == "engineer"
    assert "4711" not in (root / "audit.jsonl").read_text() and audit.verify().ok


def test_first_setup_only_on_a_station_without_pin_history(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    store = PinStore(tmp_path / "pin.json", n=FAST_N, audit=audit)
    assert store.problem == "" and not store.has_pin
    Session(store, audit=audit).set_pin("1234")
    assert audit.entries()[0]["action"] == "pin_set" and audit.entries()[0]["role"] == "first-setup"


# -- the key -------------------------------------------------------------------------------------------
def test_key_is_private_and_refused_when_others_may_read_it(tmp_path, monkeypatch):
    monkeypatch.setenv("STATION_KEY_DIR", str(tmp_path))
    key = trust.station_key()
    path = tmp_path / trust.KEY_FILE
    assert len(key) == trust.KEY_BYTES and trust.station_key() == key
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600
        path.chmod(0o644)
        with pytest.raises(trust.TrustError, match="chmod 600"):
            trust.station_key()
        path.chmod(0o600)
    path.write_text("zz\n")
    with pytest.raises(trust.TrustError, match="cannot read the station key"):
        trust.station_key()


def test_seals_are_bound_to_their_kind(tmp_path, monkeypatch):
    monkeypatch.setenv("STATION_KEY_DIR", str(tmp_path))
    sealed = trust.seal("recipe", b"x")
    assert trust.seal_problem("recipe", b"x", sealed) == ""
    assert "changed" in trust.seal_problem("engineer-pin", b"x", sealed)  # no replay as another kind
    assert "changed" in trust.seal_problem("recipe", b"y", sealed)


# -- recipes -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("value", [1e300, float("inf"), 1e5])
def test_recipe_with_recomputed_sha256_is_refused_on_every_engine(engine, value, tmp_path):
    copy = tmp_path / engine
    shutil.copytree(resources_dir() / "recipes" / engine, copy)
    assert Recipe.load(copy).content_hash in bundled_hashes()  # a true copy of a bundled recipe is trusted
    _recompute_sha256(copy, thresholds={"review": value, "ng": value})
    with pytest.raises(RecipeError) as caught:
        Recipe.load(copy)
    message = str(caught.value)
    last = AuditLog(Path(os.environ["STATION_WORKBENCH_DIR"]) / "audit.jsonl").entries()[-1]
    assert last["action"] == "recipe_refused" and last["new"] == message  # refused, and recorded
    assert "\n" not in message
    if value == 1e5:  # plausible numbers: only the seal can tell
        assert "not sealed" in message or "no seal" in message
    else:
        assert "thresholds" in message and "finite" in message


def test_sealed_recipe_edited_with_recomputed_sha256_is_refused(synthetic_recipe, tmp_path):
    copy = tmp_path / "r"
    shutil.copytree(synthetic_recipe, copy)
    assert Recipe.load(copy).name  # sealed when it was saved on this station
    _recompute_sha256(copy, thresholds={"review": 500.0, "ng": 500.0})
    with pytest.raises(RecipeError, match="seal does not match"):
        Recipe.load(copy)
    (copy / SEAL_FILE).unlink()
    with pytest.raises(RecipeError, match="no seal"):
        Recipe.load(copy)


def test_recipe_from_another_station_needs_the_key_holder(synthetic_recipe, tmp_path, monkeypatch):
    from station.trust_cli import cmd_trust_recipe

    copy = tmp_path / "r"
    shutil.copytree(synthetic_recipe, copy)
    monkeypatch.setenv("STATION_WORKBENCH_DIR", str(tmp_path / "wb"))  # the other station's own audit log
    monkeypatch.setenv("STATION_KEY_DIR", str(tmp_path / "other-key"))
    with pytest.raises(RecipeError, match="another station's key"):
        Recipe.load(copy)

    class Args:
        recipe, reason, workbench, pin_stdin = str(copy), "from the lab PC", None, False

    assert cmd_trust_recipe(Args) == 0
    assert Recipe.load(copy).content_hash  # accepted here now
    entries = AuditLog(tmp_path / "wb" / "audit.jsonl").entries()
    assert [e["action"] for e in entries] == ["recipe_refused", "trust_recipe"] and "another station" in entries[1]["old"]


def test_bundled_recipes_are_listed_by_their_content_hash():
    listed = json.loads((resources_dir() / "recipes" / TRUSTED_FILE).read_text())["recipes"]
    for engine in ENGINES:
        assert listed[engine] == Recipe._load(resources_dir() / "recipes" / engine).content_hash, \
            f"retrained {engine}? run scripts/list_bundled_recipes.py"


# -- the version store ---------------------------------------------------------------------------------
@pytest.fixture
def store(synthetic_recipe, tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    versions = VersionStore(tmp_path / "recipes", audit, create=True)
    recipe = Recipe.load(synthetic_recipe)
    versions.save(recipe, ENGINEER, activate=True)
    versions.save(Recipe.load(synthetic_recipe), ENGINEER, activate=True)
    return versions


def test_edited_active_version_is_refused(store, monkeypatch):
    monkeypatch.setenv("STATION_WORKBENCH_DIR", str(store.audit.path.parent))  # the station's audit log
    assert store.load_active().path.name == "v0002"
    _recompute_sha256(store.path_of(2), thresholds={"review": 500.0, "ng": 500.0})
    with pytest.raises(VersionStoreError, match="v0002 cannot be used"):
        store.load_active()
    assert store.info(2).error.startswith("refused")
    # the pointer edited to the new hash too: refused by its own seal
    pointer = json.loads((store.root / "active").read_text())
    pointer["content_hash"] = json.loads((store.path_of(2) / RECIPE_FILE).read_text())["content_hash"]
    (store.root / "active").write_text(json.dumps(pointer))
    with pytest.raises(VersionStoreError, match="pointer .* is refused"):
        store.load_active()
    refused = [e for e in store.audit.entries() if e["action"] == "recipe_refused"]  # and recorded, each time
    assert "seal" in refused[0]["new"] and "v0002" in refused[0]["what"] and "pointer" in refused[-1]["what"]


def test_active_pointer_hash_is_compared_on_load(store):
    # the pointer sealed for v0002, then v0002 replaced by a copy of v0001 (also sealed here): not what was activated
    shutil.rmtree(store.path_of(2))
    shutil.copytree(store.path_of(1), store.path_of(2))
    (store.path_of(1) / RECIPE_FILE).read_text()
    recipe_json = json.loads((store.path_of(2) / RECIPE_FILE).read_text())
    recipe_json["name"] = "other"
    (store.path_of(2) / RECIPE_FILE).write_text(json.dumps(recipe_json))
    with pytest.raises(VersionStoreError):
        store.load_active()


# -- the audit log -------------------------------------------------------------------------------------
@pytest.fixture
def log_with_entries(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    for i in range(6):
        audit.record(ENGINEER, "set_thresholds", f"recipe {i}", i, i + 1)
    assert audit.verify().ok and audit.verify().sealed == 6
    return audit


def _rewrite(audit: AuditLog, change) -> None:
    lines = audit.path.read_text().splitlines(keepends=True)
    audit.path.write_text("".join(change(lines)))


@pytest.mark.parametrize("tamper, expected", [
    (lambda lines: lines[:2] + lines[3:], "removed, inserted or changed"),  # a line deleted
    (lambda lines: lines[:2] + [lines[2].replace('"recipe 2"', '"recipe 9"')] + lines[3:], "changed after"),  # edited
    (lambda lines: lines[:4], "cut off the end"),  # truncated
    (lambda lines: lines[:3] + [json.dumps({"time": "t", "role": "engineer", "user": "x", "action": "a", "what": "w",
                                           "old": None, "new": None}) + "\n"] + lines[3:], "added by hand"),
    (lambda lines: [], "cut off the end"),  # emptied
])
def test_audit_tampering_is_detected_shown_and_recorded(log_with_entries, tamper, expected):
    audit = log_with_entries
    _rewrite(audit, tamper)
    check = AuditLog(audit.path).verify()
    assert not check.ok and expected in check.problem and "\n" not in check.problem
    audit.ensure_recorded(check)
    again = AuditLog(audit.path).verify()
    assert expected in again.problem and again.unrecorded == ()  # still shown, recorded once
    assert _actions(audit)[-1] == "audit_broken"
    AuditLog(audit.path).ensure_recorded(again)
    assert _actions(audit).count("audit_broken") == 1
    # an engineer acknowledges it: recorded, and the station is quiet again until the next break
    audit.acknowledge(ENGINEER, again, note="restored from backup")
    assert AuditLog(audit.path).verify().ok and _actions(audit)[-1] == "audit_acknowledged"


def test_audit_log_deleted_is_shown(log_with_entries):
    log_with_entries.path.unlink()
    assert "is missing" in AuditLog(log_with_entries.path).verify().problem


def test_audit_head_replaced_or_deleted_is_shown(log_with_entries):
    head = log_with_entries.head_path
    doc = json.loads(head.read_text())
    head.write_text(json.dumps({**doc, "seq": 3}))
    assert "not genuine" in AuditLog(log_with_entries.path).verify().problem
    head.unlink()
    assert "lost its head" in AuditLog(log_with_entries.path).verify().problem


def test_torn_last_line_is_cut_off_and_the_chain_goes_on(log_with_entries):
    with open(log_with_entries.path, "ab") as f:
        f.write(b'{"time": "2026')  # a power cut mid-write
    assert AuditLog(log_with_entries.path).verify().ok
    AuditLog(log_with_entries.path).record(ENGINEER, "x", "y")
    check = AuditLog(log_with_entries.path).verify()
    assert check.ok and check.sealed == 7


def test_entries_written_before_the_chain_are_protected_by_it(tmp_path):
    path = tmp_path / "audit.jsonl"
    old = {"time": "t", "role": "engineer", "user": "e", "action": "save_version", "what": "w", "old": None, "new": 1}
    path.write_text(json.dumps(old) + "\n")
    audit = AuditLog(path)
    audit.record(ENGINEER, "unlock", "engineer mode")
    assert audit.verify().ok and audit.verify().entries == 2
    path.write_text(path.read_text().replace('"new": 1', '"new": 2', 1))
    assert "removed, inserted or changed" in AuditLog(path).verify().problem


def test_capture_relabel_delete_restore_are_audited(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    folder = DatasetFolder(tmp_path / "data", audit=audit, actor=lambda: ENGINEER)
    folder.root.mkdir()
    item = folder.capture(np.zeros((32, 32), np.uint8), "good")
    moved = folder.relabel(item.path, "pushed", cell=(1, 2))
    trashed = folder.delete(moved.path)
    folder.restore(trashed.name)
    entries = audit.entries()
    assert [e["action"] for e in entries] == ["capture", "relabel", "delete", "restore"]
    assert entries[1]["old"]["label"] == "good" and entries[1]["new"]["label"] == "pushed"
    assert audit.verify().ok


# -- engine settings -----------------------------------------------------------------------------------
@pytest.mark.parametrize("engine, config, where", [
    ("vit", {"arch": {"embed_dim": 100_000}}, "arch.embed_dim"),
    ("vit", {"arch": {"num_heads": 5}}, "arch.num_heads"),
    ("vit", {"arch": {"depth": 10_000}}, "arch.depth"),
    ("vit", {"train": {"batch_size": 10**9}}, "train.batch_size"),
    ("vit", {"review_floor": float("nan")}, "review_floor"),
    ("rt", {"folds": 10**9}, "folds"),
    ("rt", {"search_px": 10**6}, "search_px"),
    ("rt", {"ridge": float("inf")}, "ridge"),
    ("rt-attention", {"temperature": 1e300}, "temperature"),
    ("rt-attention", {"search_px": 1000}, "search_px"),
])
def test_engine_settings_are_bounded_before_anything_is_built(engine, config, where):
    with pytest.raises(EngineError) as caught:
        engine_class(engine)(CellGrid(3, 9), config)
    assert where.split(".")[-1] in str(caught.value) and "\n" not in str(caught.value)


def test_cli_pin_first_setup_then_deleted_file_is_refused(tmp_path, monkeypatch, capsys):
    from station.cli import main

    monkeypatch.setenv("STATION_WORKBENCH_DIR", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO("1234\n1234\n"))
    assert main(["pin", "--set", "--pin-stdin"]) == 0
    (tmp_path / "engineer_pin.json").unlink()
    monkeypatch.setattr("sys.stdin", io.StringIO("9999\n9999\n"))
    assert main(["pin", "--set", "--pin-stdin"]) == 2
    assert "PIN file missing" in capsys.readouterr().err
    assert not (tmp_path / "engineer_pin.json").exists()
