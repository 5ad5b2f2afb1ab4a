"""Registration against a taught pattern, with known answers: a golden frame moved by a known transform
(rotation, scale, shift, brightness, the border, a busy background, occluded cells) is found again to
within a pixel, and a frame without the part is 'no part'."""

import cv2
import numpy as np
import pytest

from station.core.errors import RegistrationError
from station.core.grid import CellGrid
from station.core.pattern import Roi, candidate_poses, canonical_to_golden
from station.core.registration import Registrar
from station.core.teach import Setup, fit_pattern_region
from synthetic import draw_part

SIZE = 320
GRID = CellGrid(3, 9, 24)


def _goods(n, seed=0, jitter=0.5):
    rng = np.random.default_rng(seed)
    return [draw_part(rng, "good", size=SIZE, jitter=jitter) for _ in range(n)]


@pytest.fixture(scope="module")
def taught():
    goods = _goods(12)
    golden = goods[0]
    # the drawn part's pins sit at 24 px pitch round the frame's centre (draw_part): the region is known
    roi = Roi(SIZE / 2, SIZE / 2, 72, 216, 0.0)
    setup = Setup(golden, roi, GRID)
    region = fit_pattern_region(goods, setup)
    return setup, Registrar(region, GRID)


def _similarity(angle, scale, shift):
    m = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), angle, scale)
    m[:, 2] += shift
    return m


def _cell_centres():
    cols, rows = np.meshgrid(np.arange(GRID.cols), np.arange(GRID.rows))
    return np.stack([(cols.ravel() + 0.5) * GRID.cell_px, (rows.ravel() + 0.5) * GRID.cell_px], axis=1)


def _residual(registrar, golden_reg, frame, transform):
    """Per cell: distance (px) between where registration put the cell's middle and where the transform
    moved it (the golden frame's registration, moved by the known transform)."""
    found = registrar.register(frame).to_frame(_cell_centres())
    expected = golden_reg.to_frame(_cell_centres()) @ transform[:, :2].T + transform[:, 2]
    return np.linalg.norm(found - expected, axis=1)


def _part_mask(image):
    table = np.median(image[:8].reshape(-1, 3), axis=0)
    return (np.abs(image.astype(int) - table).max(axis=2) > 40).astype(np.uint8)


CASES = {
    "rotated +15": dict(angle=15), "rotated -15": dict(angle=-15), "rotated -7": dict(angle=-7),
    "scale 0.9": dict(scale=0.9), "scale 1.1": dict(scale=1.1), "shifted": dict(shift=(-37, 21)),
    "darker 40%": dict(gain=0.6), "brighter 40%": dict(gain=1.4),
    "housing off the bottom": dict(shift=(0, 40)), "housing off the right": dict(shift=(70, 0), angle=4),
    "busy background": dict(busy=True, angle=6), "two cells occluded": dict(occlude=True, shift=(5, -8)),
    "all at once": dict(angle=-12, scale=1.07, shift=(20, 25), gain=0.7, busy=True),
}


def _transformed(golden, angle=0.0, scale=1.0, shift=(0, 0), gain=1.0, busy=False, occlude=False, seed=0):
    rng = np.random.default_rng(seed)
    m = _similarity(angle, scale, np.array(shift, float))
    table = np.median(golden[:8].reshape(-1, 3), axis=0)
    frame = cv2.warpAffine(golden, m, (SIZE, SIZE), borderValue=tuple(float(v) for v in table))
    if busy:
        mask = cv2.warpAffine(_part_mask(golden), m, (SIZE, SIZE), flags=cv2.INTER_NEAREST)
        clutter = np.full_like(frame, 120)
        for _ in range(40):
            x, y = rng.integers(0, SIZE, 2)
            colour = tuple(int(v) for v in rng.integers(0, 255, 3))
            cv2.rectangle(clutter, (int(x), int(y)), (int(x + rng.integers(8, 40)), int(y + rng.integers(8, 40))),
                          colour, -1)
        frame = np.where(mask[..., None] > 0, frame, clutter)
    if occlude:  # a tool across two cells, in golden-frame coordinates moved with the part
        corners = np.array([[SIZE / 2 - 36, SIZE / 2 - 12], [SIZE / 2 + 12, SIZE / 2 + 12]])
        a, b = (corners @ m[:, :2].T + m[:, 2]).astype(int)
        cv2.rectangle(frame, tuple(int(v) for v in a), tuple(int(v) for v in b), (90, 90, 90), -1)
    return np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8), m


@pytest.mark.parametrize("case", list(CASES))
def test_a_moved_golden_part_is_found_within_a_pixel(taught, case):
    setup, registrar = taught
    golden_reg = registrar.register(setup.golden)
    frame, m = _transformed(setup.golden, **CASES[case])
    residual = _residual(registrar, golden_reg, frame, m)
    assert np.percentile(residual, 95) <= 1.0, (case, residual.round(2))


def test_residual_over_good_parts_under_pose_jitter(taught):
    _, registrar = taught
    template = registrar.region.crop_template
    from station.core.registration import cell_offsets

    residuals = np.concatenate([np.hypot(*cell_offsets(registrar.register(img).crop, template, GRID).T)
                                for img in _goods(8, seed=5, jitter=1.0)])
    assert np.percentile(residuals, 95) <= 1.0


@pytest.mark.parametrize("frame", [np.full((SIZE, SIZE, 3), 200, np.uint8), np.zeros((SIZE, SIZE, 3), np.uint8),
                                   np.random.default_rng(3).integers(0, 255, (SIZE, SIZE, 3)).astype(np.uint8)],
                         ids=["empty table", "black", "noise"])
def test_a_frame_without_the_part_is_no_part_with_the_reason(taught, frame):
    _, registrar = taught
    with pytest.raises(RegistrationError, match="part not found: the taught pattern matches"):
        registrar.register(frame)


def test_canonical_to_golden_maps_the_crop_onto_the_region():
    roi = Roi(100, 80, 60, 30, 30.0)
    m = canonical_to_golden(roi, (120, 60))
    corners = np.array([[0, 0], [120, 0], [120, 60], [0, 60]], float) @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(corners, roi.corners(), atol=1e-9)
    back = Roi.from_corners(roi.corners())
    np.testing.assert_allclose(back.to_list(), roi.to_list(), atol=1e-3)
    sheared = Roi(100, 80, 60, 30, 10.0, 0.2)  # a grid seen by a tilted camera: a parallelogram
    m = canonical_to_golden(sheared, (120, 60))
    corners = np.array([[0, 0], [120, 0], [120, 60], [0, 60]], float) @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(corners, sheared.corners(), atol=1e-9)
    np.testing.assert_allclose(Roi.from_corners(sheared.corners()).to_list(), sheared.to_list(), atol=1e-3)


def test_candidate_poses_start_at_the_nominal_pose_and_cover_the_range():
    poses = candidate_poses(15, 0.1)
    assert poses[0] == (0.0, 1.0)
    angles = {a for a, _ in poses}
    scales = {s for _, s in poses}
    assert min(angles) == -15 and max(angles) == 15 and min(scales) < 0.95 and max(scales) > 1.05
    assert len({a for a, _ in candidate_poses(180, 0)}) >= 60  # any angle, for round parts


def test_bad_regions_are_refused():
    with pytest.raises(RegistrationError, match="too small"):
        Roi(10, 10, 2, 50)
    with pytest.raises(RegistrationError, match="not a number"):
        Roi(float("nan"), 10, 20, 50)
