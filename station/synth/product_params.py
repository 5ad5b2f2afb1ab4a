"""A product's settings (the reference connector's by default) and the random draws of each image, in plain Python.

Two interpreters import this module: the station (as ``station.synth.product_params``, to validate products and
to test the draws) and Blender's Python (by path, from ``render_connector.py``, which cannot import the station).
So it imports nothing but the standard library.

Part coordinates: pin ``(x, y)``, x = 0 .. cols-1 columns, y = 0 .. rows-1 rows, stands at world
``X = (x - (cols-1)/2) * pitch``, ``Y = ((rows-1)/2 - y) * pitch``; the housing top is z = 0.  The camera keeps +Y
up in the image, so x = 0 is LEFT and y = 0 is TOP whatever the product.
"""

from __future__ import annotations

import copy
import math
import random

DEFAULT_CLASSES = ("good", "pushed", "tilted", "missing")
PIN_SHAPES = ("mixed", "cube", "cylinder")
BACKGROUNDS = ("plain", "clutter")
PIN_BOTTOM = -1.0        # pins reach this far below the housing top, whatever their height above it
HOUSING_THICK = 0.5
SENSOR_MM = 36.0         # Blender's default sensor width; with a square image it spans both directions
CLUTTER_GAP = 0.6        # clutter keeps this far from the housing, so it never touches or hides the part
CLUTTER_MAX_HEIGHT = 1.2

# The reference connector (DESIGN.md section 4), exactly as the renderer drew it before products existed: a
# product given as a partial object takes every omitted key from here.
DEFAULT_PRODUCT: dict = {
    "name": "connector",
    "cols": 3, "rows": 9, "pitch": 1.0,
    "pins": "mixed",               # mixed: cylinders where is_cylinder() says so, cubes elsewhere
    "cube_side": 0.5, "cylinder_radius": 0.25,
    "pin_height": 1.0,             # pin top above the housing top
    "housing_margin_x": 0.6, "housing_margin_y": 0.6,   # housing border around the outer pins' centres
    "housing_rgb": [0.012, 0.012, 0.015],
    "pin_rgb": [0.92, 0.80, 0.55],
    "table_rgb": [0.55, 0.57, 0.6],
    "camera": {
        # tilt from vertical towards the azimuth (from +Y towards -X). Seen straight along the part's long axis
        # (azimuth 0), a pushed pin and a pin leaning towards the camera move their tops the same way in the
        # image; from the diagonal a push moves the top along the diagonal, a lean about X up or down and a
        # lean about Y sideways.
        "tilt_deg": 22.0, "azimuth_deg": 40.0, "distance": 30.5, "lens_mm": 100.0,
        # where the camera aims, from the housing centre in part units (+x towards the last column, +y towards
        # row 0): the demo aims a little below the centre since the leaning pin tops make the top end longer;
        # a larger target_dy moves the part down in the frame
        "target_dx": 0.0, "target_dy": -0.25,
    },
    # each image draws its light uniformly from these [low, high] ranges
    "light": {
        "sun_strength": [1.4, 1.8],
        "sun_azimuth_deg": [-25.0, 25.0],     # 0 = light from the image's right (+X)
        "sun_elevation_deg": [40.0, 50.0],
        "fill_energy": [700.0, 1000.0],
        "ambient": [0.8, 1.0],
    },
    "background": "plain",        # or "clutter": boxes and cylinders of random colours on the table around the part
    "clutter_count": [8, 14],
}
DEMO_VIEW = DEFAULT_PRODUCT["camera"]["distance"] / DEFAULT_PRODUCT["camera"]["lens_mm"]


def resolve_product(given: dict | None) -> dict:
    """``given`` over the defaults (one level deep for camera and light); a light value given as one number is
    the middle of a range as wide as the demo's.  The station validates products before they get here."""
    out = copy.deepcopy(DEFAULT_PRODUCT)
    for key, value in (given or {}).items():
        if key in ("camera", "light") and isinstance(value, dict):
            out[key].update(copy.deepcopy(value))
        else:
            out[key] = copy.deepcopy(value)
    for key, value in out["light"].items():
        out["light"][key] = light_range(key, value)
    return out


def light_range(key: str, value) -> list[float]:
    """[low, high] for a light setting given as a range or as one nominal value."""
    if isinstance(value, (int, float)):
        lo, hi = DEFAULT_PRODUCT["light"][key]
        half = (hi - lo) / 2
        return [float(value) - half, float(value) + half]
    lo, hi = value
    return [float(lo), float(hi)]


def is_cylinder(x: int, y: int, pins: str = "mixed") -> bool:
    if pins != "mixed":
        return pins == "cylinder"
    return (x == 1 and y % 3 == 0) or (x != 1 and (y + 1) % 3 == 0)


def pin_xy(x: int, y: int, product: dict = DEFAULT_PRODUCT) -> tuple[float, float]:
    pitch = product["pitch"]
    return ((x - (product["cols"] - 1) / 2) * pitch, ((product["rows"] - 1) / 2 - y) * pitch)


def housing_half(product: dict) -> tuple[float, float]:
    """Half width and half length of the housing."""
    return ((product["cols"] - 1) * product["pitch"] / 2 + product["housing_margin_x"],
            (product["rows"] - 1) * product["pitch"] / 2 + product["housing_margin_y"])


def view_scales(product: dict) -> tuple[float, float]:
    """Factors for the pose jitter, so that it moves the part by the same share of the frame as on the demo: a
    shift in world units counts more in a narrower view, a turn of the camera more through a longer lens."""
    cam = product["camera"]
    return (cam["distance"] / cam["lens_mm"]) / DEMO_VIEW, DEFAULT_PRODUCT["camera"]["lens_mm"] / cam["lens_mm"]


# ----------------------------------------------------------------------------- draws

def image_params(seed: int, index: int, cls: str, product: dict | None = None) -> dict:
    """All random choices for one image, from a generator seeded by (seed, index).

    The draws keep the order they had for the demo connector (camera, light, material, defect); draws that only
    some products need (the clutter) come after them, so the demo's images stay what they were.
    """
    pr = DEFAULT_PRODUCT if product is None else product
    cam, li = pr["camera"], pr["light"]
    shift, turn = view_scales(pr)
    rng = random.Random(f"station-synth:{seed}:{index}")
    u = rng.uniform
    p: dict = {
        "camera": {
            "tilt_deg": round(cam["tilt_deg"] + u(-2.0, 2.0), 4),
            "azimuth_deg": round(cam["azimuth_deg"] + u(-3.0, 3.0), 4),
            "dx": round(u(-0.2, 0.2) * shift, 4),          # target offset, world units
            "dy": round(u(-0.2, 0.2) * shift, 4),
            "distance": round(cam["distance"] * u(0.98, 1.02), 4),
            "rot_x_deg": round(u(-1.0, 1.0) * turn, 4),     # extra camera rotation
            "rot_y_deg": round(u(-1.0, 1.0) * turn, 4),
            "rot_z_deg": round(u(-3.0, 3.0), 4),
        },
        "light": {
            "sun_strength": round(u(*li["sun_strength"]), 4),
            "sun_azimuth_deg": round(u(*li["sun_azimuth_deg"]), 4),
            "sun_elevation_deg": round(u(*li["sun_elevation_deg"]), 4),
            "fill_energy": round(u(*li["fill_energy"]), 4),
            "fill_x": round(u(-3.0, 3.0), 4),
            "fill_y": round(u(-3.0, 3.0), 4),
            "ambient": round(u(*li["ambient"]), 4),
        },
        "material": {
            "housing_rgb": [round(v, 4) for v in _jitter_rgb(rng, pr["housing_rgb"], 0.004)],
            "housing_roughness": round(u(0.35, 0.7), 4),
            "pin_rgb": [round(v, 4) for v in _jitter_rgb(rng, pr["pin_rgb"], 0.05)],
            "pin_roughness": round(u(0.35, 0.5), 4),
            "table_rgb": [round(v, 4) for v in _jitter_rgb(rng, pr["table_rgb"], 0.04)],
        },
        "defect": None,
    }
    cell = None
    if cls != "good":
        cell = [rng.randrange(pr["cols"]), rng.randrange(pr["rows"])]
        d: dict = {"kind": cls, "cell": cell}
        if cls == "pushed":
            d["depth"] = round(u(0.3, 0.7) * pr["pin_height"], 4)
        elif cls == "tilted":
            d["axis"] = rng.choice(["X", "Y"])
            d["angle_deg"] = round(u(10.0, 25.0) * rng.choice([-1, 1]), 4)
        elif cls == "missing":
            pass
        else:
            raise ValueError(f"unknown class {cls!r}")
        p["defect"] = d
    if pr["background"] == "clutter":
        p["clutter"] = _clutter(rng, pr, p["camera"])
    return {"cell": cell, "params": p}


def _jitter_rgb(rng: random.Random, base, amount: float):
    return [min(1.0, max(0.0, c + rng.uniform(-amount, amount))) for c in base]


def _clutter(rng: random.Random, pr: dict, cam: dict) -> list[dict]:
    """Boxes and cylinders on the table around the part: low, and at least CLUTTER_GAP from the housing, so that
    from a camera tilted up to ~40 degrees they hide none of the pins (the station refuses more with clutter)."""
    lo, hi = pr["clutter_count"]
    n = rng.randint(int(lo), int(hi))
    hx, hy = housing_half(pr)
    c = pr["camera"]
    # the frame's half width on the table (a little more: it widens towards the far side of a tilted view)
    reach = 1.3 * c["distance"] * (SENSOR_MM / 2) / c["lens_mm"]
    cx, cy = c["target_dx"] + cam["dx"], c["target_dy"] + cam["dy"]
    items: list[dict] = []
    for _ in range(n):
        kind = rng.choice(["box", "cylinder"])
        sx = u_round(rng, 0.5, 2.4)
        sy = u_round(rng, 0.5, 2.4) if kind == "box" else sx
        height = u_round(rng, 0.15, CLUTTER_MAX_HEIGHT)
        angle = u_round(rng, 0.0, 180.0)
        rgb = [u_round(rng, 0.03, 0.95) for _ in range(3)]
        radius = math.hypot(sx, sy) / 2
        for _try in range(25):
            x, y = u_round(rng, cx - reach, cx + reach), u_round(rng, cy - reach, cy + reach)
            clear_of_housing = abs(x) > hx + radius + CLUTTER_GAP or abs(y) > hy + radius + CLUTTER_GAP
            clear_of_others = all(math.hypot(x - o["x"], y - o["y"]) > radius + o["radius"] for o in items)
            if clear_of_housing and clear_of_others:
                items.append({"kind": kind, "x": x, "y": y, "sx": sx, "sy": sy, "height": height,
                              "angle_deg": angle, "rgb": rgb, "radius": round(radius, 4)})
                break
    return items


def u_round(rng: random.Random, lo: float, hi: float) -> float:
    return round(rng.uniform(lo, hi), 4)
