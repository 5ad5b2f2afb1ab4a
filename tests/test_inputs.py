"""Bounded inputs (issue 19, finding 5): nothing deleted that the station did not make, images sized from their
header before decoding, odd images named, and every bad option or file one line with exit 2."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from badfiles import bmp_header_lie, jpeg_header_lie, png_header_only, png_of_zeros, tiff_header_lie, webp_header_lie
from station.cli import main
from station.core.errors import ImageError, RegistrationError, StationError
from station.core.grid import CellGrid
from station.core.imageio import MIN_SIDE, image_size, read_image
from station.core.inspector import Inspector
from station.core.jsonio import loads_bounded
from station.core.outfolder import check_out_folder
from station.core.recipe import Recipe
from station.core.registration import fit_region
from station.core.settings import SETTINGS_FILE, SettingsError, StationSettings, load_settings
from station.core.training import RECIPE_FILES, read_training_images
from station.core.dataset import load_dataset


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, needle):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("station: error:") and "Traceback" not in err, err
    assert needle in lines[0], lines[0]


# -- never delete what the station did not make -----------------------------------------------------------------

def test_train_out_refuses_a_folder_that_is_not_a_recipe_and_keeps_it(synthetic_data, tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "report.txt").write_text("a week of work")
    code, _, err = run(["train", "--data", str(synthetic_data), "--out", str(out), "--quiet"], capsys)
    one_line_error(code, err, "not empty and not a recipe")
    assert (out / "report.txt").read_text() == "a week of work"
    assert not (tmp_path / "notes.setup").exists()


@pytest.mark.parametrize("where", ["data", "parent"])
def test_train_out_is_never_the_data_folder_or_above_it(synthetic_data, tmp_path, capsys, where):
    data = tmp_path / "d"
    shutil.copytree(synthetic_data / "train", data / "train")
    before = sorted(p.name for p in (data / "train" / "good").iterdir())
    out = data / "train" if where == "data" else data
    code, _, err = run(["train", "--data", str(data / "train"), "--out", str(out), "--quiet"], capsys)
    one_line_error(code, err, "data folder")
    assert sorted(p.name for p in (data / "train" / "good").iterdir()) == before


def test_an_earlier_recipe_may_be_replaced_but_not_with_other_files_in_it(synthetic_recipe, tmp_path):
    recipe = tmp_path / "r"
    shutil.copytree(synthetic_recipe, recipe)
    assert check_out_folder(recipe, RECIPE_FILES, "recipe") == recipe
    (recipe / "notes.txt").write_text("kept")
    with pytest.raises(StationError, match="notes.txt"):
        check_out_folder(recipe, RECIPE_FILES, "recipe")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StationError, match="is a file"):
        check_out_folder(tmp_path / "file", RECIPE_FILES, "recipe")
    assert check_out_folder(tmp_path / "new", RECIPE_FILES, "recipe") == tmp_path / "new"


def test_teach_out_refuses_a_folder_that_is_not_a_setup(synthetic_data, tmp_path, capsys):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "golden.png").write_bytes(b"someone's photo")
    (out / "holiday.jpg").write_bytes(b"another")
    code, _, err = run(["teach", "--data", str(synthetic_data / "train"), "--out", str(out)], capsys)
    one_line_error(code, err, "not a setup")
    assert (out / "golden.png").read_bytes() == b"someone's photo"


# -- images: the size from the header, before decoding ---------------------------------------------------------

@pytest.mark.parametrize("name, data", [
    ("png.png", png_header_only(30000, 30000)), ("png.png", png_header_only(100000, 100000)),
    ("jpeg.jpg", jpeg_header_lie(30000, 30000, __import__("random").Random(0))),
    ("bmp.bmp", bmp_header_lie(30000, 30000)), ("tif.tif", tiff_header_lie(100000, 100000)),
    ("webp.webp", webp_header_lie(30000, 30000)), ("wide.png", png_header_only(40000, 16)),
])
def test_a_header_that_claims_a_huge_image_is_refused_before_decoding(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageError, match="refused before decoding"):
        read_image(path)


def test_a_real_png_of_81_megapixels_is_refused_before_decoding(tmp_path):
    path = tmp_path / "zeros.png"
    path.write_bytes(png_of_zeros(9000, 9000))
    assert path.stat().st_size < 200_000
    with pytest.raises(ImageError, match="9000 x 9000 px, over the limit"):
        image_size(path)
    with pytest.raises(ImageError, match="refused before decoding"):
        read_image(path)


@pytest.mark.parametrize("shape", [(1, 1000), (1000, 1), (MIN_SIDE - 1, 200), (3, 3, 3)])
def test_images_smaller_than_a_part_are_refused(tmp_path, shape):
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), np.zeros(shape, np.uint8))
    with pytest.raises(ImageError, match=f"smaller than {MIN_SIDE} px"):
        read_image(path)


def test_signed_and_float_pixels_are_refused_in_one_line(tmp_path):
    signed = tmp_path / "signed.tif"
    cv2.imwrite(str(signed), np.full((40, 40), -300, np.int16))
    with pytest.raises(ImageError, match="signed or 32-bit"):
        read_image(signed)
    floats = tmp_path / "float.tif"
    cv2.imwrite(str(floats), np.full((40, 40), 0.5, np.float32))
    with pytest.raises(ImageError, match="floating point"):
        read_image(floats)
    unsigned = tmp_path / "unsigned.tif"  # 16-bit unsigned keeps its high byte
    cv2.imwrite(str(unsigned), np.full((40, 40), 512, np.uint16))
    assert read_image(unsigned)[0, 0, 0] == 2


def test_a_cameras_12_bit_images_in_16_bit_files_are_named_once_per_folder(tmp_path, caplog):
    """A 12-bit camera's frames saved as 16-bit PNG keep 16 grey levels by their high byte: the station reads them
    as it reads every 16-bit image (one rule for all the product's frames) and says so, once for the folder."""
    few, full = tmp_path / "mono12", tmp_path / "mono16"
    few.mkdir()
    full.mkdir()
    ramp = np.tile(np.linspace(0, 1, 64), (48, 1))
    for i in range(3):
        cv2.imwrite(str(few / f"{i}.png"), (ramp * 4095).astype(np.uint16))
        cv2.imwrite(str(full / f"{i}.png"), (ramp * 65535).astype(np.uint16))
    with caplog.at_level("WARNING", logger="station.core.imageio"):
        frames = [read_image(p) for p in sorted(few.iterdir())] + [read_image(p) for p in sorted(full.iterdir())]
    told = [r.getMessage() for r in caplog.records]
    assert len(told) == 1 and "reach only 4095 of 65535" in told[0] and "keep 16 grey levels" in told[0]
    assert str(few) in told[0] and "\n" not in told[0]
    assert frames[0].max() == 15 and frames[-1].max() == 255  # read alike, as before


def test_a_damaged_file_says_so_in_one_line_and_nothing_on_stderr(tmp_path, capfd):
    ok, enc = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = bytearray(enc.tobytes())
    data[200:210] = b"\x00" * 10  # a CRC error in the image data: libpng used to print it on stderr
    path = tmp_path / "crc.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="corrupt") as info:
        read_image(path)
    assert "\n" not in str(info.value)
    assert capfd.readouterr().err == ""


def test_read_image_gives_a_writable_rgb_array(tmp_path):
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), np.full((20, 30, 3), (10, 20, 30), np.uint8))
    image = read_image(path)
    assert image.shape == (20, 30, 3) and image.flags.writeable and tuple(image[0, 0]) == (30, 20, 10)


@pytest.mark.parametrize("shape", [(16, 20000, 3), (20000, 16, 3), (1, 1000, 3), (1000, 1)])
def test_an_odd_frame_is_one_ng_result_not_an_opencv_error(synthetic_recipe, shape):
    result = Inspector(Recipe.load(synthetic_recipe)).inspect(np.zeros(shape, np.uint8))
    assert result.verdict.value == "NG" and result.label == "no_part" and "\n" not in result.message


# -- one odd image among the good ones --------------------------------------------------------------------------

def test_one_black_image_among_good_ones_is_named_not_used_to_switch_to_full_frame(synthetic_data):
    goods = sorted((synthetic_data / "train" / "good").iterdir())[:8]
    images = [read_image(p) for p in goods] + [np.zeros((256, 256, 3), np.uint8)]
    names = [p.name for p in goods] + ["black.png"]
    with pytest.raises(RegistrationError, match="8 of 9 good images but not in black.png"):
        fit_region(images, CellGrid(3, 9), names=names)


def test_one_good_image_of_another_size_is_left_out_and_named(synthetic_data, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(synthetic_data / "train", data)
    cv2.imwrite(str(data / "good" / "zz_black.png"), np.zeros((100, 100, 3), np.uint8))
    kept, images, skipped = read_training_images(load_dataset(data, "train"))
    assert len(skipped) == 1 and "zz_black.png: 100 x 100 px" in skipped[0]
    assert all(im.shape == (256, 256, 3) for im in images) and len(kept.samples) == len(images)


def test_a_large_cameras_free_form_frames_are_kept_no_larger_than_the_crop_needs_and_live_frames_match(
        tmp_path, capsys, monkeypatch):
    """A 20 MP camera's good images at full size would not fit in memory by the hundred: a free-form product
    keeps each frame only as large as its way to the crop needs, and a live frame at full size gets the same
    crop, so the recipe scores it as it scored the frames it was trained on."""
    import station.core.freeform as freeform
    import station.core.training as training
    from station.core.registration import WHOLE_LONG_PX, WHOLE_SHORT_PX, bounded_whole_frame

    rng = np.random.default_rng(3)
    data = tmp_path / "d" / "train" / "good"
    data.mkdir(parents=True)
    base = cv2.GaussianBlur(rng.integers(0, 255, (70, 110, 3), dtype=np.uint8), (0, 0), 2)
    frames = []
    for k in range(10):  # 1400 x 2200 px: over the bound on both sides
        frame = cv2.resize(base, (2200, 1400), interpolation=cv2.INTER_CUBIC)
        frame = np.clip(frame.astype(np.int16) + rng.integers(-6, 7, frame.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(data / f"{k:02d}.png"), frame)
        frames.append(frame)
    shrunk = bounded_whole_frame(frames[0])
    assert min(shrunk.shape[:2]) == WHOLE_SHORT_PX and max(shrunk.shape[:2]) <= WHOLE_LONG_PX
    assert bounded_whole_frame(shrunk) is shrunk  # once shrunk, never again

    seen = []
    real_read = training.read_training_images

    def spy(data, whole_frames=False):
        out = real_read(data, whole_frames)
        seen.append(max(max(im.shape[:2]) for im in out[1]))
        return out

    monkeypatch.setattr(training, "read_training_images", spy)
    # the choice is measured elsewhere (test_patch, test_texture): here RT, so the test stays short
    monkeypatch.setattr(freeform, "choose_free_form", lambda goods, cell_px, seed, defects: (
        "rt", freeform.candidate_configs()["rt"], freeform.rt_grid(goods, cell_px), {"chosen_by": "test"}))
    code, _, err = run(["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err
    assert seen == [shrunk.shape[1]], seen  # read once, each frame within the bound (2200 x 1400 -> 1609 x 1024)
    inspector = Inspector(Recipe.load(tmp_path / "r"))
    full, small = inspector.inspect(frames[1]), inspector.inspect(bounded_whole_frame(frames[1]))
    assert full.score == small.score and np.array_equal(full.registered.crop, small.registered.crop)


# -- options, JSON and settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["train", "--config", "not json"], "--config is not valid JSON"),
    (["train", "--config", "[1, 2]"], "must be a JSON object"),
    (["train", "--config", "[" * 5000 + "]" * 5000], "nests 5000 levels"),
    (["train", "--seed", "-1"], "--seed: -1 is outside"),
    (["train", "--seed", "1e3"], "not a whole number"),
    (["train", "--max-per-class", "0"], "--max-per-class"),
    (["inspect", "--source", "demo", "--fps", "nan"], "--fps"),
    (["inspect", "--source", "demo", "--max-frames", "-3"], "--max-frames"),
    (["teach", "--data", "x", "--out", "y", "--max-angle", "inf"], "--max-angle"),
    (["nosuchcommand"], "invalid choice"),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path, capsys, argv, needle):
    if argv[0] == "train":
        argv = [*argv, "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "r")]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exit, after its one line
        code = exc.code
    _, err = capsys.readouterr()
    one_line_error(code, err, needle)


def test_internal_errors_are_one_line(monkeypatch, capsys):
    import station.cli as cli

    def boom(args):
        raise RuntimeError("first line\nsecond line\n  third")

    monkeypatch.setattr(cli, "cmd_eval", boom)
    code = main(["eval"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "first line second line third" in err


@pytest.mark.parametrize("text, needle", [
    ("[" * 100000 + "]" * 100000, "nests"), ('{"a": NaN}', "NaN"), ('{"a": -Infinity}', "Infinity"),
    ('{"a": 1' + "0" * 5000 + "}", "not valid JSON"), ("{", "not valid JSON")])
def test_bounded_json(text, needle):
    with pytest.raises(StationError, match=needle) as info:
        loads_bounded(text, "X")
    assert "\n" not in str(info.value)
    assert loads_bounded('{"a": "[[[[[[", "b": [1, {"c": 2}]}', "X") == {"a": "[[[[[[", "b": [1, {"c": 2}]}


@pytest.mark.parametrize("content", ["[" * 100000 + "]" * 100000, '{"a":' * 3000 + "1" + "}" * 3000,
                                     '{"version": 1e400}', '{"version": 1, "demo_fps": NaN}',
                                     '{"version": [1]}', '{"version": true}'])
def test_a_settings_file_that_fails_in_any_way_is_set_aside(tmp_path, monkeypatch, content):
    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path))
    (tmp_path / SETTINGS_FILE).write_text(content)
    settings, message = load_settings()
    assert settings == StationSettings() and "set aside" in message and "\n" not in message
    assert [p.read_text() for p in tmp_path.glob(f"{SETTINGS_FILE}.bad-*")] == [content]


def test_setting_aside_never_overwrites_an_earlier_set_aside_file(tmp_path, monkeypatch):
    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path))
    for i in range(3):  # the same second, most likely
        (tmp_path / SETTINGS_FILE).write_text(f"broken {i}")
        load_settings()
    assert sorted(p.read_text() for p in tmp_path.glob(f"{SETTINGS_FILE}.bad-*")) == ["broken 0", "broken 1",
                                                                                       "broken 2"]


def test_a_bad_environment_variable_is_named_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("STATION_DEMO_FPS", "abc")
    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"version": 1}))
    with pytest.raises(SettingsError, match="STATION_DEMO_FPS='abc'") as info:
        load_settings()
    assert "\n" not in str(info.value)
    assert (tmp_path / SETTINGS_FILE).exists()  # the file was not to blame: not set aside


def test_a_huge_frame_from_a_camera_never_reaches_the_warp(synthetic_recipe):
    frame = np.zeros((30000, 30000), np.uint8)  # untouched zero pages: no memory until written
    result = Inspector(Recipe.load(synthetic_recipe)).inspect(frame)
    assert result.verdict.value == "NG" and "over the limit" in result.message
