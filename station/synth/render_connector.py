"""Render the reference connector (DESIGN.md section 4) with Blender's Python module.

Run this file with an interpreter that has ``bpy`` (it imports nothing from ``station``)::

    python render_connector.py --out DIR --count N --seed S --start I --size 256 \
        [--classes good,pushed,tilted,missing] [--samples 16] [--threads 0]

It renders images ``I .. I+N-1``. Image ``i`` has class ``classes[i % len(classes)]`` and
all its random choices come from a generator seeded with ``(seed, i)``, so the images do not
depend on how a data set is split over processes.  Output::

    DIR/<class>/<class>_<i:05d>.png
    DIR/manifest-<I>.json      {"start": I, "count": N, "seed": S, "size": ..., "images": [...]}

Scene (world units, pitch 1.0): pin (x, y), x = 0..2 columns, y = 0..8 rows, stands at
world ``X = x - 1``, ``Y = 4 - y``.  The camera looks down with its image "up" along +Y and
tilts towards the part's diagonal (+Y turned by ``CAM_AZIMUTH_DEG`` towards -X; it stands on the
+X, -Y side), so in the image x=0 is LEFT, x=2 is RIGHT, y=0 is TOP, y=8 is BOTTOM, and the pin
tops sit up and to the left of their footprints.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
import warnings

import bpy
from mathutils import Euler, Matrix, Vector

COLS, ROWS, PITCH = 3, 9, 1.0
PIN_LEN = 2.0
PIN_TOP = 1.0          # pin top height above the housing top (z = 0); the rest sits inside
HOUSING_MARGIN = 0.6  # housing border around the outer pins' centres
HOUSING_THICK = 0.5
DEFAULT_CLASSES = ("good", "pushed", "tilted", "missing")

# nominal camera: tilt from vertical (deg, camera on the -Y side), distance, lens
CAM_TILT_DEG = 22.0
# direction the camera tilts towards, from +Y towards -X (deg). Seen straight along the part's long
# axis, a pushed pin and a pin leaning towards the camera move their tops the same way in the image;
# from the diagonal a push moves the top along the diagonal, a lean about X moves it up or down and
# a lean about Y sideways (override with STATION_SYNTH_CAM_AZIMUTH to compare views)
CAM_AZIMUTH_DEG = float(os.environ.get("STATION_SYNTH_CAM_AZIMUTH", "40.0"))
CAM_DIST = 30.5
CAM_LENS_MM = 100.0
CAM_TARGET_Y = -0.25   # aim a little below the centre: the leaning pin tops make the top end longer


def is_cylinder(x: int, y: int) -> bool:
    return (x == 1 and y % 3 == 0) or (x != 1 and (y + 1) % 3 == 0)


def pin_xy(x: int, y: int) -> tuple[float, float]:
    return ((x - (COLS - 1) / 2) * PITCH, ((ROWS - 1) / 2 - y) * PITCH)


# ----------------------------------------------------------------------------- parameters

def image_params(seed: int, index: int, cls: str) -> dict:
    """All random choices for one image, from a generator seeded by (seed, index)."""
    rng = random.Random(f"station-synth:{seed}:{index}")
    u = rng.uniform
    p: dict = {
        "camera": {
            "tilt_deg": round(CAM_TILT_DEG + u(-2.0, 2.0), 4),
            "azimuth_deg": round(CAM_AZIMUTH_DEG + u(-3.0, 3.0), 4),
            "dx": round(u(-0.2, 0.2), 4),          # target offset, world units
            "dy": round(u(-0.2, 0.2), 4),
            "distance": round(CAM_DIST * u(0.98, 1.02), 4),
            "rot_x_deg": round(u(-1.0, 1.0), 4),     # extra camera rotation
            "rot_y_deg": round(u(-1.0, 1.0), 4),
            "rot_z_deg": round(u(-3.0, 3.0), 4),
        },
        "light": {
            "sun_strength": round(u(1.4, 1.8), 4),
            "sun_azimuth_deg": round(u(-25.0, 25.0), 4),    # 0 = light from image right (+X)
            "sun_elevation_deg": round(u(40.0, 50.0), 4),
            "fill_energy": round(u(700.0, 1000.0), 4),
            "fill_x": round(u(-3.0, 3.0), 4),
            "fill_y": round(u(-3.0, 3.0), 4),
            "ambient": round(u(0.8, 1.0), 4),
        },
        "material": {
            "housing_rgb": [round(v, 4) for v in _jitter_rgb(rng, (0.012, 0.012, 0.015), 0.004)],
            "housing_roughness": round(u(0.35, 0.7), 4),
            "pin_rgb": [round(v, 4) for v in _jitter_rgb(rng, (0.92, 0.80, 0.55), 0.05)],
            "pin_roughness": round(u(0.35, 0.5), 4),
            "table_rgb": [round(v, 4) for v in _jitter_rgb(rng, (0.55, 0.57, 0.6), 0.04)],
        },
        "defect": None,
    }
    cell = None
    if cls != "good":
        cell = [rng.randrange(COLS), rng.randrange(ROWS)]
        d: dict = {"kind": cls, "cell": cell}
        if cls == "pushed":
            d["depth"] = round(u(0.3, 0.7), 4)
        elif cls == "tilted":
            d["axis"] = rng.choice(["X", "Y"])
            d["angle_deg"] = round(u(10.0, 25.0) * rng.choice([-1, 1]), 4)
        elif cls == "missing":
            pass
        else:
            raise ValueError(f"unknown class {cls!r}")
        p["defect"] = d
    return {"cell": cell, "params": p}


def _jitter_rgb(rng: random.Random, base, amount: float):
    return [min(1.0, max(0.0, c + rng.uniform(-amount, amount))) for c in base]


# ----------------------------------------------------------------------------- scene

def _material(name: str, metallic: float) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mat.use_nodes = True     # deprecated (always on) in Blender 5
    except Exception:
        pass
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    bsdf.inputs["Metallic"].default_value = metallic
    return mat


def _bsdf(mat):
    return mat.node_tree.nodes.get("Principled BSDF")


def _box_mesh(name, sx, sy, z0, z1):
    mesh = bpy.data.meshes.new(name)
    hx, hy = sx / 2, sy / 2
    verts = [(-hx, -hy, z0), (hx, -hy, z0), (hx, hy, z0), (-hx, hy, z0),
             (-hx, -hy, z1), (hx, -hy, z1), (hx, hy, z1), (-hx, hy, z1)]
    faces = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]
    mesh.from_pydata(verts, [], faces)
    mesh.update()
    return mesh


def _cyl_mesh(name, r, z0, z1, n=24):
    mesh = bpy.data.meshes.new(name)
    verts = []
    for z in (z0, z1):
        for i in range(n):
            a = 2 * math.pi * i / n
            verts.append((r * math.cos(a), r * math.sin(a), z))
    faces = [tuple(reversed(range(n))), tuple(range(n, 2 * n))]
    for i in range(n):
        j = (i + 1) % n
        faces.append((i, j, n + j, n + i))
    mesh.from_pydata(verts, [], faces)
    for poly in mesh.polygons:
        poly.use_smooth = len(poly.vertices) == 4
    mesh.update()
    return mesh


class Scene:
    def __init__(self, size: int, samples: int, threads: int):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        sc = bpy.context.scene
        self.sc = sc
        r = sc.render
        r.engine = "CYCLES"
        r.resolution_x = r.resolution_y = size
        r.resolution_percentage = 100
        r.film_transparent = False
        r.use_persistent_data = True
        r.dither_intensity = 0.0     # no 8-bit dither noise: much smaller PNG files
        if threads > 0:
            r.threads_mode = "FIXED"
            r.threads = threads
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "RGB"
        r.image_settings.color_depth = "8"
        r.image_settings.compression = 100
        try:
            sc.view_settings.view_transform = "Standard"
        except Exception:
            pass
        cy = sc.cycles
        cy.device = "CPU"
        cy.samples = samples
        cy.use_adaptive_sampling = False
        cy.max_bounces = 4
        cy.diffuse_bounces = 2
        cy.glossy_bounces = 2
        cy.transmission_bounces = 0
        cy.volume_bounces = 0
        cy.transparent_max_bounces = 0
        cy.caustics_reflective = False
        cy.caustics_refractive = False
        cy.pixel_filter_type = "BLACKMAN_HARRIS"
        try:
            cy.use_denoising = True
            cy.denoiser = "OPENIMAGEDENOISE"
            cy.denoising_input_passes = "RGB_ALBEDO_NORMAL"
            cy.denoising_prefilter = "FAST"
        except Exception:
            cy.use_denoising = False

        # world (ambient fill)
        world = bpy.data.worlds.new("World")
        sc.world = world
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                world.use_nodes = True
        except Exception:
            pass
        self.bg = world.node_tree.nodes.get("Background")
        self.bg.inputs["Color"].default_value = (0.8, 0.82, 0.85, 1.0)

        # materials
        self.m_table = _material("table", 0.0)
        _bsdf(self.m_table).inputs["Roughness"].default_value = 0.8
        self.m_housing = _material("housing", 0.0)
        spec = _bsdf(self.m_housing).inputs.get("Specular IOR Level")
        if spec is not None:
            spec.default_value = 0.15   # matte plastic: keep the housing dark
        self.m_pin = _material("pin", 1.0)

        # table
        table = bpy.data.objects.new("table", _box_mesh("table", 80, 80, -HOUSING_THICK - 0.1, -HOUSING_THICK))
        table.data.materials.append(self.m_table)
        sc.collection.objects.link(table)

        # housing
        hw = (COLS - 1) * PITCH + 2 * HOUSING_MARGIN
        hl = (ROWS - 1) * PITCH + 2 * HOUSING_MARGIN
        housing = bpy.data.objects.new("housing", _box_mesh("housing", hw, hl, -HOUSING_THICK, 0.0))
        housing.data.materials.append(self.m_housing)
        sc.collection.objects.link(housing)

        # pins: origin at the housing top (z = 0), the pivot for a tilt
        z0, z1 = PIN_TOP - PIN_LEN, PIN_TOP
        cube = _box_mesh("pin_cube", 0.5, 0.5, z0, z1)
        cyl = _cyl_mesh("pin_cyl", 0.25, z0, z1)
        for m in (cube, cyl):
            m.materials.append(self.m_pin)
        self.pins = {}
        for x in range(COLS):
            for y in range(ROWS):
                ob = bpy.data.objects.new(f"pin_{x}_{y}", cyl if is_cylinder(x, y) else cube)
                px, py = pin_xy(x, y)
                ob.location = (px, py, 0.0)
                sc.collection.objects.link(ob)
                self.pins[(x, y)] = ob

        # lights
        sun_data = bpy.data.lights.new("sun", type="SUN")
        sun_data.angle = math.radians(3.0)
        self.sun = bpy.data.objects.new("sun", sun_data)
        sc.collection.objects.link(self.sun)
        fill_data = bpy.data.lights.new("fill", type="AREA")
        fill_data.size = 8.0
        self.fill = bpy.data.objects.new("fill", fill_data)
        sc.collection.objects.link(self.fill)

        # camera
        cam_data = bpy.data.cameras.new("camera")
        cam_data.lens = CAM_LENS_MM
        cam_data.sensor_fit = "AUTO"
        cam_data.clip_start = 1.0
        cam_data.clip_end = 200.0
        self.cam = bpy.data.objects.new("camera", cam_data)
        sc.collection.objects.link(self.cam)
        sc.camera = self.cam

    def apply(self, params: dict) -> None:
        c, li, ma, d = params["camera"], params["light"], params["material"], params["defect"]
        # reset pins
        for (x, y), ob in self.pins.items():
            px, py = pin_xy(x, y)
            ob.location = (px, py, 0.0)
            ob.rotation_euler = (0.0, 0.0, 0.0)
            ob.hide_render = False
        if d is not None:
            ob = self.pins[tuple(d["cell"])]
            if d["kind"] == "pushed":
                ob.location.z = -d["depth"]
            elif d["kind"] == "tilted":
                a = math.radians(d["angle_deg"])
                ob.rotation_euler = (a, 0.0, 0.0) if d["axis"] == "X" else (0.0, a, 0.0)
            elif d["kind"] == "missing":
                ob.hide_render = True

        # camera: look at the housing centre from the diagonal (see CAM_AZIMUTH_DEG), then jitter
        t = math.radians(c["tilt_deg"])
        target = Vector((c["dx"], c["dy"] + CAM_TARGET_Y, 0.3))
        # tilt about an axis turned by the azimuth; the roll back keeps the part upright in the image
        turn = Matrix.Rotation(math.radians(c.get("azimuth_deg", 0.0)), 3, "Z")
        base = turn @ Euler((t, 0.0, 0.0), "XYZ").to_matrix() @ turn.transposed()
        jitter = Euler((math.radians(c["rot_x_deg"]), math.radians(c["rot_y_deg"]),
                        math.radians(c["rot_z_deg"])), "XYZ").to_matrix()
        rot = base @ jitter
        view_dir = base @ Vector((0.0, 0.0, -1.0))      # jitter rotates about the camera
        self.cam.location = target - view_dir * c["distance"]
        self.cam.rotation_euler = rot.to_euler("XYZ")

        # lights
        az, el = math.radians(li["sun_azimuth_deg"]), math.radians(li["sun_elevation_deg"])
        to_light = Vector((math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)))
        self.sun.rotation_euler = to_light.to_track_quat("Z", "Y").to_euler()
        self.sun.data.energy = li["sun_strength"]
        self.fill.location = (li["fill_x"], li["fill_y"], 14.0)
        self.fill.rotation_euler = (0.0, 0.0, 0.0)
        self.fill.data.energy = li["fill_energy"]
        self.bg.inputs["Strength"].default_value = li["ambient"]

        # materials
        hb = _bsdf(self.m_housing)
        hb.inputs["Base Color"].default_value = (*ma["housing_rgb"], 1.0)
        hb.inputs["Roughness"].default_value = ma["housing_roughness"]
        pb = _bsdf(self.m_pin)
        pb.inputs["Base Color"].default_value = (*ma["pin_rgb"], 1.0)
        pb.inputs["Roughness"].default_value = ma["pin_roughness"]
        _bsdf(self.m_table).inputs["Base Color"].default_value = (*ma["table_rgb"], 1.0)

    def render(self, path: str) -> None:
        self.sc.render.filepath = path
        bpy.ops.render.render(write_still=True)


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--classes", default=",".join(DEFAULT_CLASSES))
    ap.add_argument("--samples", type=int, default=12)
    ap.add_argument("--threads", type=int, default=0, help="render threads (0 = all cores)")
    ap.add_argument("--keep-existing", action="store_true",
                    help="keep an image already at its path (images depend only on seed and index)")
    a = ap.parse_args(argv)
    classes = [c.strip() for c in a.classes.split(",") if c.strip()]
    if not classes or a.count < 0 or a.start < 0 or a.size < 8:
        ap.error("bad --classes/--count/--start/--size")
    for c in classes:
        if c not in DEFAULT_CLASSES:
            ap.error(f"unknown class {c!r}; known: {', '.join(DEFAULT_CLASSES)}")

    out = os.path.abspath(a.out)
    scene = Scene(a.size, a.samples, a.threads)
    images = []
    t0 = time.perf_counter()
    for i in range(a.start, a.start + a.count):
        cls = classes[i % len(classes)]
        info = image_params(a.seed, i, cls)
        rel = f"{cls}/{cls}_{i:05d}.png"
        os.makedirs(os.path.join(out, cls), exist_ok=True)
        t1 = time.perf_counter()
        kept = a.keep_existing and os.path.isfile(os.path.join(out, rel))  # the driver removed broken ones
        if not kept:
            scene.apply(info["params"])
            scene.render(os.path.join(out, rel))
        images.append({"index": i, "file": rel, "class": cls, "cell": info["cell"],
                       "params": info["params"]})
        print(f"SYNTH {i} {rel} {'kept' if kept else f'{time.perf_counter() - t1:.2f}s'}", flush=True)
    frag = {"start": a.start, "count": a.count, "seed": a.seed, "size": a.size,
            "classes": classes, "seconds": round(time.perf_counter() - t0, 2), "images": images}
    tmp = os.path.join(out, f".manifest-{a.start}.json.tmp")
    with open(tmp, "w") as f:
        json.dump(frag, f, indent=1)
    os.replace(tmp, os.path.join(out, f"manifest-{a.start}.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
