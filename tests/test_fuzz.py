"""Fuzz: generated bad files (tests/badfiles.py) through `station inspect`, `eval` and `train` in-process, and
bad JSON through the settings and recipe loaders. Every run ends in exit 0 (bad files left out and said) or 2
with one line; no traceback, no internal error; memory stays bounded. scripts/fuzz_inputs.py runs the same
files, more of them, each in its own process under an address-space limit."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from badfiles import KIND_COUNT, bad_images, bad_json_texts
from station.cli import main
from station.core.settings import SETTINGS_FILE, StationSettings, load_settings

N_IMAGES = 20 * KIND_COUNT  # 540
REPO = Path(__file__).resolve().parents[1]


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean(code, out, err, allowed=(2,)):
    """No traceback, no internal error; an error is exactly one line of stderr."""
    assert "Traceback" not in err and "internal error" not in err, err
    assert code in allowed, (code, err)
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("station: error:")]
        assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad-images")
    for name, data in bad_images(N_IMAGES, seed=19):
        (folder / name).write_bytes(data)
    return folder


def test_inspect_a_folder_of_bad_images(bad_folder, synthetic_recipe, capsys):
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, out, err = run(["inspect", "--recipe", str(synthetic_recipe), "--source", str(bad_folder)], capsys)
    assert_clean(code, out, err)
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == N_IMAGES  # every file reported, none stops the run
    for line in lines:
        if line.get("error"):
            assert "\n" not in line["error"]
        else:  # the few that decode (a flipped byte in a JPEG, grey + alpha) hold no part
            assert line["verdict"] == "NG", line
    unread = sum(1 for line in lines if line.get("error"))
    assert f"{unread} of {N_IMAGES} images could not be read" in err
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024  # ru_maxrss: KiB
    assert grown_mb < 300, f"peak memory grew by {grown_mb:.0f} MB"


def test_inspect_and_eval_each_kind_alone(bad_folder, synthetic_recipe, tmp_path, capsys):
    for path in sorted(bad_folder.iterdir())[:KIND_COUNT]:
        code, out, err = run(["inspect", "--recipe", str(synthetic_recipe), "--source", str(path)], capsys)
        assert_clean(code, out, err, allowed=(0, 2))
        data = tmp_path / path.stem
        (data / "good").mkdir(parents=True)
        shutil.copy(path, data / "good" / path.name)
        code, out, err = run(["eval", "--recipe", str(synthetic_recipe), "--data", str(data), "--json"], capsys)
        assert_clean(code, out, err, allowed=(0, 2))
        if code == 0:
            assert json.loads(out)["n_images"] == 1


def test_train_on_nothing_but_bad_images_is_one_line(bad_folder, tmp_path, capsys):
    data = tmp_path / "d"
    (data / "good").mkdir(parents=True)
    for path in sorted(bad_folder.iterdir())[:KIND_COUNT]:
        if "wrong-suffix" in path.name or "flipped-bytes-jpeg" in path.name or "two-channel" in path.name:
            continue  # these decode to a picture: a real (if poor) good image
        shutil.copy(path, data / "good" / path.name)
    out_dir = tmp_path / "r"
    code, out, err = run(["train", "--data", str(data), "--out", str(out_dir), "--quiet"], capsys)
    assert_clean(code, out, err)
    assert "no readable 'good' images" in err and not out_dir.exists()


def test_train_leaves_out_bad_images_and_counts_them(bad_folder, synthetic_data, tmp_path, capsys):
    data = tmp_path / "d"
    shutil.copytree(synthetic_data / "train", data)
    bad = [p for p in sorted(bad_folder.iterdir()) if not any(k in p.name for k in
                                                               ("wrong-suffix", "flipped-bytes-jpeg", "two-channel"))]
    for i, path in enumerate(bad[:40]):
        shutil.copy(path, data / ("good" if i % 2 else "pushed") / path.name)
    code, out, err = run(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--quiet",
                          "--max-per-class", "1000"], capsys)
    assert_clean(code, out, err, allowed=(0,))
    result = json.loads(out)
    assert len(result["skipped_images"]) == 40 and result["n_train"]["good"] == 30


@pytest.mark.parametrize("kind, text", bad_json_texts(seed=19), ids=[k for k, _ in bad_json_texts(seed=19)])
def test_bad_settings_json_is_set_aside(tmp_path, monkeypatch, kind, text):
    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path))
    (tmp_path / SETTINGS_FILE).write_text(text, encoding="utf-8", errors="surrogateescape")
    settings, message = load_settings()
    assert settings == StationSettings()
    assert "set aside" in message and "\n" not in message
    assert len(list(tmp_path.glob(f"{SETTINGS_FILE}.bad-*"))) == 1


# until recipe.py reads recipe.json through station.core.jsonio.loads_bounded (a one-line change, owned elsewhere)
# these four end in an internal error; strict: the marks go away by themselves once it does
RECIPE_JSON_BOUNDED = "loads_bounded" in (REPO / "station" / "core" / "recipe.py").read_text(encoding="utf-8")
NEEDS_BOUNDED_RECIPE_JSON = set() if RECIPE_JSON_BOUNDED else {"nested-lists", "nested-objects", "unclosed-nesting",
                                                               "huge-number"}


@pytest.mark.parametrize("kind, text", [
    pytest.param(k, t, marks=pytest.mark.xfail(strict=True, reason="recipe.py must read recipe.json through "
                                               "station.core.jsonio.loads_bounded (one line, owned elsewhere)"))
    if k in NEEDS_BOUNDED_RECIPE_JSON else (k, t) for k, t in bad_json_texts(seed=19)],
    ids=[k for k, _ in bad_json_texts(seed=19)])
def test_bad_recipe_json_is_one_line(synthetic_recipe, synthetic_data, tmp_path, capsys, kind, text):
    recipe = tmp_path / "r"
    shutil.copytree(synthetic_recipe, recipe)
    (recipe / "recipe.json").write_text(text, encoding="utf-8", errors="surrogateescape")
    code, out, err = run(["inspect", "--recipe", str(recipe), "--source",
                          str(next((synthetic_data / "test" / "good").iterdir()))], capsys)
    assert_clean(code, out, err)


def test_header_lies_stay_within_one_gigabyte_of_address_space(bad_folder, synthetic_recipe, tmp_path):
    """A sample in a process of its own whose address space is limited to 1 GiB: the 30000 x 30000 claims took
    3.5 to 5.2 GB before they were refused from the header."""
    sample = tmp_path / "sample"
    sample.mkdir()
    for path in bad_folder.iterdir():
        if "claims" in path.name or "zeros" in path.name:
            shutil.copy(path, sample / path.name)
    limit = 1 << 30

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "station", "inspect", "--recipe", str(synthetic_recipe),
                           "--source", str(sample)], capture_output=True, text=True, timeout=120, env=env,
                          preexec_fn=cap)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "MemoryError" not in proc.stdout + proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == len(list(sample.iterdir())) and all("refused before decoding" in x["error"] for x in lines)
