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
import station.synth.product as product_mod
from station.synth import product_params as pp
from station.synth import (
    KNOWN_CLASSES, SynthError, class_for, find_blender_python, merge_fragments, plan_classes,
    render_dataset, split_work,
)
from station.synth.product import Product, ProductError, load_product


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


# ----------------------------------------------------------------------------- products

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]


def _suite_script():
    spec = importlib.util.spec_from_file_location("product_suite", REPO / "scripts" / "product_suite.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod   # pydantic resolves the script's annotations through its module
    spec.loader.exec_module(mod)
    return mod


def test_default_product_draws_what_the_demo_drew():
    # expected values computed with render_connector.image_params before products existed
    expected = json.loads((DATA / "synth_demo_params.json").read_text())
    for e in expected:
        want = {"cell": e["cell"], "params": e["params"]}
        assert pp.image_params(e["seed"], e["index"], e["cls"]) == want
        assert pp.image_params(e["seed"], e["index"], e["cls"], Product().settings()) == want
        assert pp.image_params(e["seed"], e["index"], e["cls"], load_product({}).settings()) == want


def test_default_product_draws_the_shipped_demo_images():
    for split, seed in (("train", 1), ("test", 2)):
        manifest = json.loads((REPO / "resources" / "demo" / split / "manifest.json").read_text())
        for im in manifest["images"]:
            assert pp.image_params(seed, im["index"], im["class"]) == {"cell": im["cell"], "params": im["params"]}


def test_omitted_keys_keep_the_demo_values():
    assert Product().settings() == pp.DEFAULT_PRODUCT and Product().is_demo()
    p = load_product({"cols": 2, "camera": {"tilt_deg": 10}, "light": {"sun_elevation_deg": 60}}).settings()
    assert p["cols"] == 2 and p["rows"] == 9 and p["pitch"] == 1.0
    assert p["camera"] == {**pp.DEFAULT_PRODUCT["camera"], "tilt_deg": 10.0}
    assert p["light"]["sun_elevation_deg"] == [55.0, 65.0]   # a nominal value keeps the demo's width of range
    assert p["light"]["ambient"] == pp.DEFAULT_PRODUCT["light"]["ambient"]
    assert pp.resolve_product({"cols": 2, "light": {"sun_elevation_deg": 60}}) == {**p, "camera": pp.DEFAULT_PRODUCT["camera"]}
    assert load_product("demo").is_demo() and load_product(None).is_demo()


@pytest.mark.parametrize("bad,names", [
    ({"cols": 0}, "cols"), ({"rows": 41}, "rows"), ({"colz": 3}, "colz"), ({"pins": "star"}, "pins"),
    ({"pitch": 0.1}, "pitch"), ({"cube_side": 0.95}, "cube_side"), ({"pins": "cylinder", "cylinder_radius": 0.5}, "cylinder_radius"),
    ({"housing_margin_y": 0.1}, "housing_margin_y"), ({"housing_rgb": [1, 2, 0]}, "housing_rgb"),
    ({"pin_rgb": [0.5, 0.5]}, "pin_rgb"), ({"camera": {"tilt_deg": 80}}, "camera.tilt_deg"),
    ({"camera": {"lens": 50}}, "camera.lens"), ({"camera": {"distance": -3}}, "camera.distance"),
    ({"light": {"ambient": [1.0, 0.5]}}, "light.ambient"), ({"light": {"sun_strength": True}}, "light.sun_strength"),
    ({"light": {"sun_elevation_deg": [0, 10]}}, "light.sun_elevation_deg"), ({"background": "wood"}, "background"),
    ({"clutter_count": [5, 2]}, "clutter_count"), ({"background": "clutter", "camera": {"tilt_deg": 42}}, "tilt_deg"),
    ({"name": "a b"}, "name"), ({"camera": 3}, "camera"), ([1, 2], "JSON object"),
])
def test_bad_product_is_refused_in_one_line_naming_the_key(bad, names):
    with pytest.raises(ProductError) as ei:
        load_product(bad)
    msg = str(ei.value)
    assert "\n" not in msg and names in msg


def test_product_from_a_file_or_a_suite_name(tmp_path, monkeypatch):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"name": "two-rows", "cols": 2, "rows": 10}))
    assert load_product(str(f)).settings()["rows"] == 10
    f.write_text("{not json")
    with pytest.raises(ProductError, match="not valid JSON"):
        load_product(str(f))
    with pytest.raises(ProductError, match="cannot read"):
        load_product(str(tmp_path / "missing.json"))
    suite = json.loads((REPO / "scripts" / "product_suite.json").read_text())
    name = suite["products"][0]["name"]
    assert load_product(name).name == name and not load_product(name).is_demo()
    with pytest.raises(ProductError, match=name):   # the error lists the names there are
        load_product("no-such-product")
    monkeypatch.setenv(product_mod.SUITE_ENV_VAR, str(tmp_path / "suite.json"))
    (tmp_path / "suite.json").write_text(json.dumps({"products": [{"name": "mine", "product": {"rows": 4}}]}))
    assert load_product("mine").settings()["rows"] == 4


def test_product_shapes_the_draws():
    pr = load_product({"cols": 2, "rows": 10, "pin_height": 0.5, "camera": {"lens_mm": 200.0}}).settings()
    cells = [pp.image_params(5, i, "pushed", pr)["cell"] for i in range(200)]
    assert {c for c, _ in cells} == {0, 1} and {r for _, r in cells} == set(range(10))
    demo = pp.image_params(5, 3, "pushed")["params"]
    p = pp.image_params(5, 3, "pushed", pr)["params"]
    assert p["defect"]["depth"] == pytest.approx(demo["defect"]["depth"] / 2, abs=1e-4)   # a push scales with the pin
    # twice the lens: the same share of the frame takes half the turn of the camera
    assert p["camera"]["rot_x_deg"] == pytest.approx(demo["camera"]["rot_x_deg"] / 2, abs=1e-4)
    assert p["camera"]["dx"] == pytest.approx(demo["camera"]["dx"] / 2, abs=1e-4)
    assert "clutter" not in p


def test_clutter_is_drawn_after_the_demo_draws_and_keeps_off_the_housing():
    pr = load_product({"background": "clutter", "clutter_count": [10, 16]}).settings()
    hx, hy = pp.housing_half(pr)
    counts = []
    for i in range(40):
        p = pp.image_params(9, i, "tilted", pr)["params"]
        demo = pp.image_params(9, i, "tilted")["params"]
        assert {k: p[k] for k in demo} == demo
        counts.append(len(p["clutter"]))
        for item in p["clutter"]:
            # the bounding circle of every object stays CLUTTER_GAP clear of the housing
            assert abs(item["x"]) > hx + item["radius"] + pp.CLUTTER_GAP or abs(item["y"]) > hy + item["radius"] + pp.CLUTTER_GAP
            assert item["height"] <= pp.CLUTTER_MAX_HEIGHT
    assert min(counts) >= 8 and max(counts) <= 16


FAKE_RECORDING_RENDERER = """
import argparse, json, os, sys
ap = argparse.ArgumentParser()
for name in ("--out", "--classes", "--count", "--seed", "--start", "--size", "--threads", "--product"):
    ap.add_argument(name)
ap.add_argument("--keep-existing", action="store_true")
a = ap.parse_args()
product = json.loads(a.product) if a.product else {"cols": 3, "rows": 9}
classes, images = a.classes.split(","), []
for i in range(int(a.start), int(a.start) + int(a.count)):
    cls = classes[i % len(classes)]
    images.append({"index": i, "file": f"{cls}/{cls}_{i:05d}.png", "class": cls,
                   "cell": None if cls == "good" else [product["cols"] - 1, product["rows"] - 1]})
with open(os.path.join(a.out, f"manifest-{a.start}.json"), "w") as f:
    json.dump({"images": images}, f)
with open(os.path.join(a.out, f"argv-{a.start}.json"), "w") as f:
    json.dump(sys.argv[1:], f)
"""


def test_product_reaches_the_renderer_and_the_manifest(monkeypatch, tmp_path, capsys):
    script = tmp_path / "fake_renderer.py"
    script.write_text(FAKE_RECORDING_RENDERER)
    monkeypatch.setattr(synth, "RENDER_SCRIPT", script)
    monkeypatch.setattr(synth, "find_blender_python", lambda python=None: sys.executable)
    prod = {"name": "ten-by-two", "cols": 2, "rows": 10, "camera": {"azimuth_deg": 0}}
    out = tmp_path / "out"
    m = json.loads(render_dataset(out, count=8, seed=4, workers=2, product=prod).read_text())
    assert m["grid"] == {"cols": 2, "rows": 10} and m["product"] == load_product(prod).settings()
    assert m["images"][1]["cell"] == [1, 9]
    for argv_file in out.glob("argv-*.json"):
        argv = json.loads(argv_file.read_text())
        assert json.loads(argv[argv.index("--product") + 1]) == load_product(prod).settings()
    # the connector renders without --product, as before products existed
    demo = tmp_path / "demo"
    m = json.loads(render_dataset(demo, count=4, seed=4, workers=1).read_text())
    assert "--product" not in json.loads((demo / "argv-0.json").read_text())
    assert m["grid"] == {"cols": 3, "rows": 9} and m["product"]["name"] == "connector"
    # images of another product are not kept
    with pytest.raises(SynthError, match="another seed, size or product"):
        render_dataset(out, count=8, seed=4, workers=1, keep_existing=True)
    # the command line: --product FILE, recorded in the manifest; a bad product is one error line
    from station.cli import main
    f = tmp_path / "p.json"
    f.write_text(json.dumps(prod))
    assert main(["synth", "--out", str(tmp_path / "cli"), "--count", "4", "--workers", "1", "--product", str(f)]) == 0
    emitted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert emitted["product"] == "ten-by-two"
    assert json.loads((tmp_path / "cli" / "manifest.json").read_text())["product"]["cols"] == 2
    f.write_text(json.dumps({"cols": 0}))
    assert main(["synth", "--out", str(tmp_path / "bad"), "--count", "4", "--product", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("station: error:") and "cols" in err[0]


def test_merge_fragments_checks_cells_against_the_products_grid():
    imgs = [_fake_image(i) for i in range(4)]
    imgs[1]["cell"] = [3, 0]
    m = merge_fragments([{"images": imgs}], count=4, seed=0, size=64, product={"cols": 4, "rows": 9, "name": "x"})
    assert m["grid"] == {"cols": 4, "rows": 9} and m["product"]["name"] == "x"
    with pytest.raises(SynthError, match="outside the 2x9 grid"):
        merge_fragments([{"images": imgs}], count=4, seed=0, size=64, product={"cols": 2, "rows": 9})


def test_suite_file_fixes_four_distinct_products(tmp_path):
    suite = _suite_script()
    entries = suite.load_suite()
    assert len(entries) >= 4
    settings = [e.settings().settings() for e in entries]
    assert all(not e.settings().is_demo() for e in entries)
    assert len({json.dumps({k: v for k, v in s.items() if k != "name"}, sort_keys=True) for s in settings}) == len(entries)
    seeds = [s for e in entries for s in (e.train.seed, e.test.seed)]
    assert len(set(seeds)) == len(seeds) and not {1, 2} & set(seeds)
    for e in entries:
        assert (e.size, e.train.count, e.test.count) == (256, 320, 200)
    assert suite.cache_root(None) == (Path(os.environ.get(suite.CACHE_ENV_VAR) or "~/.cache/station/product-suite")
                                      .expanduser())
    assert suite.cache_root(str(tmp_path)) == tmp_path
    assert not suite.is_complete(tmp_path / "nothing", 1, 4, 256, {})


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


@pytest.mark.skipif(BPY_PYTHON is None,
                    reason=f"no interpreter with bpy (set {synth.ENV_VAR} to one to run this test)")
def test_render_a_product_and_check_the_suites_framing(tmp_path):
    prod = {"name": "small", "cols": 2, "rows": 4, "pins": "cube", "background": "clutter", "clutter_count": [3, 5],
            "camera": {"distance": 20.0}}
    m = json.loads(render_dataset(tmp_path, count=4, seed=3, size=64, workers=1, python=BPY_PYTHON,
                                  product=prod).read_text())
    assert m["product"]["name"] == "small" and m["grid"] == {"cols": 2, "rows": 4}
    assert all(synth.is_whole_png(tmp_path / im["file"]) and im["params"]["clutter"] for im in m["images"])
    # every pin of every suite product in view and the part upright (scripts/product_suite.py check does all images)
    suite = _suite_script()
    for e in suite.load_suite():
        for f in synth.check_framing(e.settings(), seed=e.train.seed, count=6, python=BPY_PYTHON):
            assert f["min_margin"] >= suite.MIN_MARGIN, (e.name, f)
            assert max(abs(f["col_angle_deg"]), abs(f["row_angle_deg"])) <= suite.MAX_ROLL_DEG, (e.name, f)
