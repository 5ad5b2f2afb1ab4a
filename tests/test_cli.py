"""The headless command contract: JSON out, and one clear line with a non-zero exit for bad input."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from station.cli import main


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_eval_inspect_round_trip(synthetic_data, tmp_path, capsys):
    recipe = tmp_path / "rec"
    code, out, err = run(["train", "--data", str(synthetic_data), "--out", str(recipe), "--max-per-class", "20",
                          "--seed", "1", "--quiet"], capsys)
    assert code == 0, err
    assert json.loads(out)["n_train"]["good"] == 20
    code, out, err = run(["eval", "--recipe", str(recipe), "--data", str(synthetic_data), "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    for key in ("auroc", "accuracy", "per_class_recall", "confusion", "escape_rate", "false_reject_rate",
                "cell_localization", "fit_seconds", "ms_per_image_median", "n_images"):
        assert key in result
    assert result["n_images"] == 50 and result["auroc"] > 0.9
    code, out, err = run(["inspect", "--recipe", str(recipe), "--source", str(synthetic_data / "test" / "pushed")],
                         capsys)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 10
    assert {"verdict", "class", "score", "cell_scores", "timings_ms", "recipe_hash"} <= lines[0].keys()
    assert len(lines[0]["cell_scores"]) == 9 and len(lines[0]["cell_scores"][0]) == 3


def _assert_one_line_error(code, out, err, needle):
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("station: error:"), err
    assert needle in lines[0]


def test_missing_data_folder(tmp_path, capsys):
    _assert_one_line_error(*run(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), "--quiet"],
                                capsys), "not found")


def test_empty_class_folder(synthetic_data, tmp_path, capsys):
    data = tmp_path / "d"
    shutil.copytree(synthetic_data / "train", data)
    (data / "scratch").mkdir()
    _assert_one_line_error(*run(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--quiet"], capsys),
                           "has no images")


def test_corrupt_image_in_training_data_is_left_out_named_and_counted(synthetic_data, tmp_path, capsys):
    data = tmp_path / "d"
    shutil.copytree(synthetic_data / "train", data)
    (data / "good" / "zz_corrupt.png").write_bytes(b"not an image at all")
    code, out, err = run(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--quiet"], capsys)
    assert code == 0, err
    said = [line for line in err.splitlines() if "left out" in line]
    assert len(said) == 1 and "zz_corrupt.png" in said[0] and "Traceback" not in err
    result = json.loads(out)
    assert result["n_train"]["good"] == 30 and len(result["skipped_images"]) == 1
    assert "zz_corrupt.png" in result["skipped_images"][0]


def test_training_with_no_readable_good_image_is_an_error(synthetic_data, tmp_path, capsys):
    data = tmp_path / "d"
    (data / "good").mkdir(parents=True)
    shutil.copytree(synthetic_data / "train" / "pushed", data / "pushed")
    for i in range(3):
        (data / "good" / f"{i}.png").write_bytes(b"not an image at all")
    _assert_one_line_error(*run(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--quiet"], capsys),
                           "no readable 'good' images")


def test_corrupt_image_during_inspect_reports_it_and_inspects_the_rest(synthetic_recipe, synthetic_data, tmp_path,
                                                                        capsys):
    folder = tmp_path / "f"
    shutil.copytree(synthetic_data / "test" / "good", folder)
    (folder / "good_0003.png").write_bytes(b"garbage")
    code, out, err = run(["inspect", "--recipe", str(synthetic_recipe), "--source", str(folder)], capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code != 0 and len(lines) == 20
    bad = [line for line in lines if line.get("error")]
    assert len(bad) == 1 and bad[0]["frame"] == "good_0003.png"
    assert "1 of 20" in err and "Traceback" not in err


def test_unknown_engine(synthetic_data, tmp_path, capsys):
    _assert_one_line_error(*run(["train", "--engine", "magic", "--data", str(synthetic_data), "--out",
                                 str(tmp_path / "r"), "--quiet"], capsys), "unknown engine 'magic'")


@pytest.mark.parametrize("damage", ["tamper", "schema", "unreadable", "missing"])
def test_bad_recipe(synthetic_recipe, synthetic_data, tmp_path, capsys, damage):
    recipe = tmp_path / "r"
    shutil.copytree(synthetic_recipe, recipe)
    doc_path = recipe / "recipe.json"
    doc = json.loads(doc_path.read_text())
    if damage == "tamper":
        doc["thresholds"]["ng"] = 1e12
        doc_path.write_text(json.dumps(doc))
    elif damage == "schema":
        doc["schema_version"] = 7
        doc_path.write_text(json.dumps(doc))
    elif damage == "unreadable":
        doc_path.write_bytes(b"\xff\xfe garbage")
    else:
        shutil.rmtree(recipe)
    _assert_one_line_error(*run(["eval", "--recipe", str(recipe), "--data", str(synthetic_data), "--json"], capsys),
                           "recipe")


def test_unknown_source(synthetic_recipe, tmp_path, capsys):
    _assert_one_line_error(*run(["inspect", "--recipe", str(synthetic_recipe), "--source",
                                 str(tmp_path / "nothing-here")], capsys), "source not found")


def test_grid_option_is_validated(synthetic_data, tmp_path, capsys):
    _assert_one_line_error(*run(["train", "--grid", "three-by-nine", "--data", str(synthetic_data), "--out",
                                 str(tmp_path / "r"), "--quiet"], capsys), "COLSxROWS")


def test_square_grid_for_a_product_without_pins(tmp_path, capsys):
    """A new product from a folder: region derived from the good images, a square patch grid."""
    rng = np.random.default_rng(0)
    for label, n in (("good", 12), ("scratch", 3)):
        (tmp_path / "d" / label).mkdir(parents=True)
        for i in range(n):
            img = np.full((120, 160, 3), 220, np.uint8)
            x, y = 50 + int(rng.integers(-4, 4)), 30 + int(rng.integers(-4, 4))
            cv2.rectangle(img, (x, y), (x + 60, y + 60), (60, 60, 60), -1)
            if label == "scratch":
                cv2.line(img, (x + 10, y + 10), (x + 40, y + 30), (240, 240, 240), 2)
            cv2.imwrite(str(tmp_path / "d" / label / f"{i}.png"), img)
    code, out, err = run(["train", "--data", str(tmp_path / "d"), "--grid", "4x4", "--out", str(tmp_path / "r"),
                          "--quiet"], capsys)
    assert code == 0, err
    code, out, err = run(["eval", "--recipe", str(tmp_path / "r"), "--data", str(tmp_path / "d"), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["auroc"] == 1.0


def test_console_script_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "station", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("station ")


def test_training_says_when_labelled_defects_overlap_the_good_parts(synthetic_data, tmp_path, capsys):
    """Calibration weighs an escape 5 times a false reject, as rates: where a labelled defect class looks like
    the good parts, stopping every part costs least, and the recipe would judge good parts NG. Training says so,
    on stderr, in its output and in the recipe."""
    from station.core.recipe import Recipe
    from station.core.training import threshold_warnings

    assert threshold_warnings({"held_out_good_ng_rate": 0.0}) == []
    assert threshold_warnings({"held_out_good_ng_rate": 0.04}) == []  # fewer than one good part in 20
    assert threshold_warnings({}) == []  # an engine that does not report its held-out scores
    assert threshold_warnings({"held_out_good_ng_rate": 0.5})[0].startswith("50% of the held-out good images")
    data = tmp_path / "d"
    shutil.copytree(synthetic_data / "train" / "good", data / "good")
    (data / "lookalike").mkdir()
    for path in sorted((data / "good").iterdir())[:10]:  # "defects" that are good parts
        shutil.copy(path, data / "lookalike" / path.name)
    recipe = tmp_path / "r"
    code, out, err = run(["train", "--data", str(data), "--out", str(recipe), "--quiet"], capsys)
    assert code == 0, err
    trained = json.loads(out)
    assert trained["thresholds"]["ng"] <= trained["held_out_good_max"] and trained["held_out_good_ng_rate"] >= 0.05
    assert len(trained["warnings"]) == 1 and "overlap the good parts" in err
    assert Recipe.load(recipe).doc.provenance["warnings"] == trained["warnings"]
    code, out, err = run(["train", "--data", str(synthetic_data), "--out", str(tmp_path / "r2"), "--quiet",
                          "--max-per-class", "20"], capsys)
    assert code == 0 and "warnings" not in json.loads(out) and "overlap" not in err
