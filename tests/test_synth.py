"""Tests of `station.synth` (the Blender driver).  Pure-logic tests need no bpy; the render
test runs only when an interpreter with bpy is available ($STATION_BLENDER_PYTHON, or bpy in
this interpreter)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import station.synth as synth
from station.synth import (
    KNOWN_CLASSES, SynthError, class_for, find_blender_python, merge_fragments, plan_classes,
    render_dataset, split_work,
)


# ----------------------------------------------------------------------------- pure logic

def test_class_for_cycles_through_classes():
    assert [class_for(i) for i in range(6)] == ["good", "pushed", "tilted", "missing", "good", "pushed"]
    assert class_for(5, ("good", "missing")) == "missing"
    with pytest.raises(ValueError):
        class_for(-1)


@pytest.mark.parametrize("count", [0, 1, 3, 4, 7, 480, 241])
def test_plan_classes_is_balanced(count):
    plan = plan_classes(count)
    assert sum(plan.values()) == count
    assert max(plan.values()) - min(plan.values()) <= 1
    assert plan_classes(480) == {c: 120 for c in KNOWN_CLASSES}


@pytest.mark.parametrize("count,workers", [(0, 2), (1, 2), (5, 2), (480, 2), (7, 3), (3, 8), (10, 1)])
def test_split_work_covers_every_index_once(count, workers):
    chunks = split_work(count, workers)
    assert len(chunks) <= max(1, workers)
    idx = [i for start, n in chunks for i in range(start, start + n)]
    assert idx == list(range(count))
    assert all(n > 0 for _, n in chunks)
    if chunks:
        sizes = [n for _, n in chunks]
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("todo,workers", [
    ([False] * 6 + [True] * 6, 2), ([True, False] * 5, 3), ([False] * 5, 4), ([True] * 7, 3), ([], 2),
    ([False, False, True], 4)])
def test_split_todo_covers_every_index_and_shares_the_work(todo, workers):
    chunks = synth.split_todo(todo, workers)
    covered = [i for start, n in chunks for i in range(start, start + n)]
    assert covered == list(range(len(todo)))
    assert all(n > 0 for _, n in chunks)
    per_chunk = [sum(todo[start:start + n]) for start, n in chunks]
    if any(todo):
        assert len(chunks) == min(workers, sum(todo)) and max(per_chunk) - min(per_chunk) <= 1
    # growing a set of 6 to 12 on 2 workers: one worker per new half, not one for the old and one for the new
    if todo == [False] * 6 + [True] * 6:
        assert per_chunk == [3, 3]


def test_split_work_rejects_bad_arguments():
    with pytest.raises(ValueError):
        split_work(-1, 2)
    with pytest.raises(ValueError):
        split_work(4, 0)


def _fake_image(i, classes=KNOWN_CLASSES):
    cls = classes[i % len(classes)]
    return {"index": i, "file": f"{cls}/{cls}_{i:05d}.png", "class": cls,
            "cell": None if cls == "good" else [i % 3, i % 9], "params": {"camera": {"dx": 0.1 * i}}}


def test_merge_fragments_orders_and_describes_images():
    frag_b = {"start": 3, "count": 3, "images": [_fake_image(i) for i in (3, 4, 5)]}
    frag_a = {"start": 0, "count": 3, "images": [_fake_image(i) for i in (0, 1, 2)]}
    m = merge_fragments([frag_b, frag_a], count=6, seed=9, size=64)
    assert m["schema"] == 1 and m["generator"] == "station synth"
    assert m["seed"] == 9 and m["size"] == 64 and m["grid"] == {"cols": 3, "rows": 9}
    assert [im["file"] for im in m["images"]] == [
        "good/good_00000.png", "pushed/pushed_00001.png", "tilted/tilted_00002.png",
        "missing/missing_00003.png", "good/good_00004.png", "pushed/pushed_00005.png"]
    assert m["images"][0]["cell"] is None
    assert m["images"][1]["cell"] == [1, 1]
    assert m["images"][5]["params"] == {"camera": {"dx": 0.5}}
    json.dumps(m)  # serialisable


def test_merge_fragments_detects_gaps_duplicates_and_bad_entries():
    imgs = [_fake_image(i) for i in range(4)]
    with pytest.raises(SynthError, match="missing"):
        merge_fragments([{"images": imgs[:3]}], count=4, seed=0, size=64)
    with pytest.raises(SynthError, match="two manifest fragments"):
        merge_fragments([{"images": imgs}, {"images": imgs[:1]}], count=4, seed=0, size=64)
    bad = [dict(im) for im in imgs]
    bad[2]["class"] = "good"
    with pytest.raises(SynthError, match="class"):
        merge_fragments([{"images": bad}], count=4, seed=0, size=64)
    bad = [dict(im) for im in imgs]
    bad[0]["cell"] = [0, 0]
    with pytest.raises(SynthError, match="cell"):
        merge_fragments([{"images": bad}], count=4, seed=0, size=64)
    bad = [dict(im) for im in imgs]
    bad[1]["cell"] = [3, 0]
    with pytest.raises(SynthError, match="outside"):
        merge_fragments([{"images": bad}], count=4, seed=0, size=64)


def test_render_dataset_rejects_unknown_class(tmp_path):
    with pytest.raises(SynthError, match="unknown class"):
        render_dataset(tmp_path, count=4, seed=0, classes=("good", "bent"))


# ----------------------------------------------------------------------------- interpreter lookup

def test_no_bpy_interpreter_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(synth.ENV_VAR, raising=False)
    monkeypatch.setattr(synth.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SynthError) as ei:
        find_blender_python()
    msg = str(ei.value)
    assert "bpy" in msg and "pip install bpy" in msg and synth.ENV_VAR in msg
    with pytest.raises(SynthError, match="pip install bpy"):
        render_dataset(tmp_path / "out", count=2, seed=0)


def test_env_var_pointing_to_python_without_bpy(monkeypatch, tmp_path):
    monkeypatch.setenv(synth.ENV_VAR, str(tmp_path / "no-such-python"))
    with pytest.raises(SynthError, match="cannot import bpy"):
        find_blender_python()


def test_failing_renderer_raises_with_stderr(monkeypatch, tmp_path):
    script = tmp_path / "fake_renderer.py"
    script.write_text("import sys\nsys.stderr.write('boom: scene exploded\\n')\nsys.exit(3)\n")
    monkeypatch.setattr(synth, "RENDER_SCRIPT", script)
    monkeypatch.setattr(synth, "find_blender_python", lambda python=None: sys.executable)
    with pytest.raises(SynthError) as ei:
        render_dataset(tmp_path / "out", count=4, seed=0, workers=2)
    assert "boom: scene exploded" in str(ei.value)
    assert "code 3" in str(ei.value)


FAKE_KEEPING_RENDERER = """
import argparse, json, os
ap = argparse.ArgumentParser()
for name in ("--out", "--classes", "--count", "--seed", "--start", "--size", "--threads"):
    ap.add_argument(name)
ap.add_argument("--keep-existing", action="store_true")
a = ap.parse_args()
classes, images = a.classes.split(","), []
for i in range(int(a.start), int(a.start) + int(a.count)):
    cls = classes[i % len(classes)]
    rel = f"{cls}/{cls}_{i:05d}.png"
    path = os.path.join(a.out, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not (a.keep_existing and os.path.isfile(path)):
        with open(path, "wb") as f:
            f.write(b"\\x89PNG\\r\\n\\x1a\\n" + b"new" * 4 + b"\\0\\0\\0\\0IEND\\xaeB`\\x82")
    images.append({"index": i, "file": rel, "class": cls, "cell": None if cls == "good" else [0, 0]})
with open(os.path.join(a.out, f"manifest-{a.start}.json"), "w") as f:
    json.dump({"images": images}, f)
"""


def test_keep_existing_keeps_whole_images_and_renders_cut_ones_again(monkeypatch, tmp_path):
    script = tmp_path / "fake_renderer.py"
    script.write_text(FAKE_KEEPING_RENDERER)
    monkeypatch.setattr(synth, "RENDER_SCRIPT", script)
    monkeypatch.setattr(synth, "find_blender_python", lambda python=None: sys.executable)
    out = tmp_path / "out"
    whole = b"\x89PNG\r\n\x1a\n" + b"old" * 4 + b"\0\0\0\0IEND\xaeB`\x82"
    (out / "good").mkdir(parents=True)
    (out / "pushed").mkdir()
    (out / "good" / "good_00000.png").write_bytes(whole)
    (out / "pushed" / "pushed_00001.png").write_bytes(whole[:-10])  # cut short while writing
    manifest = json.loads(render_dataset(out, count=4, seed=1, workers=2, keep_existing=True).read_text())
    assert manifest["count"] == 4
    assert (out / "good" / "good_00000.png").read_bytes() == whole
    assert b"new" in (out / "pushed" / "pushed_00001.png").read_bytes()
    assert all(synth.is_whole_png(out / im["file"]) for im in manifest["images"])
    render_dataset(out, count=4, seed=1, workers=1)  # without the flag every image is rendered again
    assert b"new" in (out / "good" / "good_00000.png").read_bytes()


# ----------------------------------------------------------------------------- real render

def _bpy_python() -> str | None:
    env = os.environ.get(synth.ENV_VAR)
    if env:
        try:
            ok = subprocess.run([env, "-c", "import bpy"], capture_output=True, timeout=180).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        return env if ok else None
    if importlib.util.find_spec("bpy") is not None:
        return sys.executable
    return None


BPY_PYTHON = _bpy_python()


@pytest.mark.skipif(BPY_PYTHON is None,
                    reason=f"no interpreter with bpy (set {synth.ENV_VAR} to one to run this test)")
def test_render_four_images(tmp_path):
    seen = []
    path = render_dataset(tmp_path, count=4, seed=3, size=64, workers=2, python=BPY_PYTHON,
                          progress=lambda d, n: seen.append((d, n)))
    assert path == tmp_path / "manifest.json"
    m = json.loads(path.read_text())
    assert m["schema"] == 1 and m["size"] == 64 and m["seed"] == 3
    assert [im["class"] for im in m["images"]] == list(KNOWN_CLASSES)
    assert sorted(seen)[-1] == (4, 4)
    assert not list(tmp_path.glob("manifest-*.json"))
    for im in m["images"]:
        f = tmp_path / im["file"]
        data = f.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (w, h) == (64, 64)
        assert data[25] == 2  # colour type 2: RGB
        assert (im["cell"] is None) == (im["class"] == "good")
        assert {"camera", "light", "material"} <= set(im["params"])
    # the same seed gives the same parameters, however the work is split
    path2 = render_dataset(tmp_path / "again", count=4, seed=3, size=64, workers=1, python=BPY_PYTHON)
    m2 = json.loads(path2.read_text())
    assert [im["params"] for im in m2["images"]] == [im["params"] for im in m["images"]]
