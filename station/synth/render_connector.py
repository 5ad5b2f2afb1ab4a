"""Render a product (the reference connector of DESIGN.md section 4 by default) with Blender's Python module.

Run this file with an interpreter that has ``bpy`` (it imports nothing from ``station``; its settings and random
draws come from ``product_params.py`` beside it)::

    python render_connector.py --out DIR --count N --seed S --start I --size 256 \
        [--classes good,pushed,tilted,missing] [--samples 16] [--threads 0] [--product JSON_OR_FILE] [--check-framing]

It renders images ``I .. I+N-1``. Image ``i`` has class ``classes[i % len(classes)]`` and
all its random choices come from a generator seeded with ``(seed, i)``, so the images do not
depend on how a data set is split over processes.  Output::

    DIR/<class>/<class>_<i:05d>.png
    DIR/manifest-<I>.json      {"start": I, "count": N, "seed": S, "size": ..., "images": [...]}

Scene: see ``product_params`` for the part's coordinates.  The camera looks down with its image "up" along +Y and
tilts towards the product's azimuth (+Y turned towards -X; the demo's camera stands on the +X, -Y side), so in the
image x=0 is LEFT, y=0 is TOP.  ``--check-framing`` renders nothing: it prints, per image, how far the pins stay
inside the frame and how upright the part stands (``FRAME {json}`` lines).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

import bpy
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Euler, Matrix, Vector

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # Blender's Python has no station package
import product_params as pp  # noqa: E402

DEFAULT_CLASSES = pp.DEFAULT_CLASSES
TARGET_Z = 0.3         # the camera aims a little above the housing top, between it and the pin tops


# ----------------------------------------------------------------------------- scene

def _enable_nodes(owner) -> None:
    """Switch on a material's or world's node tree: deprecated (always on) in Blender 5, needed before it;
    a Blender that refuses the attribute has its nodes on already, so that is reported, not fatal."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            owner.use_nodes = True
    except (AttributeError, TypeError) as exc:
        print(f"render_connector: use_nodes not set on {owner.name}: {exc}", file=sys.stderr)


def _material(name: str, metallic: float) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    _enable_nodes(mat)
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
    def __init__(self, size: int, samples: int, threads: int, product: dict):
        self.product = pr = product
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
        except (AttributeError, TypeError) as exc:  # a build without it renders with its own default
            print(f"render_connector: view transform left as it is: {exc}", file=sys.stderr)
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
        except (AttributeError, TypeError) as exc:  # a build without OpenImageDenoise renders without it
            print(f"render_connector: no denoiser: {exc}", file=sys.stderr)
            cy.use_denoising = False

        # world (ambient fill)
        world = bpy.data.worlds.new("World")
        sc.world = world
        _enable_nodes(world)
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
        thick = pp.HOUSING_THICK
        table = bpy.data.objects.new("table", _box_mesh("table", 80, 80, -thick - 0.1, -thick))
        table.data.materials.append(self.m_table)
        sc.collection.objects.link(table)

        # housing
        hx, hy = pp.housing_half(pr)
        housing = bpy.data.objects.new("housing", _box_mesh("housing", 2 * hx, 2 * hy, -thick, 0.0))
        housing.data.materials.append(self.m_housing)
        sc.collection.objects.link(housing)

        # pins: origin at the housing top (z = 0), the pivot for a tilt
        z0, z1 = pp.PIN_BOTTOM, pr["pin_height"]
        cube = _box_mesh("pin_cube", pr["cube_side"], pr["cube_side"], z0, z1)
        cyl = _cyl_mesh("pin_cyl", pr["cylinder_radius"], z0, z1)
        for m in (cube, cyl):
            m.materials.append(self.m_pin)
        self.pins = {}
        for x in range(pr["cols"]):
            for y in range(pr["rows"]):
                ob = bpy.data.objects.new(f"pin_{x}_{y}", cyl if pp.is_cylinder(x, y, pr["pins"]) else cube)
                px, py = pp.pin_xy(x, y, pr)
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
        cam_data.lens = pr["camera"]["lens_mm"]
        cam_data.sensor_fit = "AUTO"
        cam_data.clip_start = 1.0
        cam_data.clip_end = 4.0 * pr["camera"]["distance"] + 200.0
        self.cam = bpy.data.objects.new("camera", cam_data)
        sc.collection.objects.link(self.cam)
        sc.camera = self.cam
        self.clutter = self._clutter_pool() if pr["background"] == "clutter" else []

    def _clutter_pool(self) -> list:
        """As many boxes and cylinders as an image may place, each with a mesh and material of its own (for its
        colour); an image moves, scales and colours the ones it draws and hides the rest."""
        n = int(self.product["clutter_count"][1])
        meshes = {"box": _box_mesh("clutter_box", 1.0, 1.0, 0.0, 1.0),
                  "cylinder": _cyl_mesh("clutter_cyl", 0.5, 0.0, 1.0, 32)}
        pool = []
        for kind, mesh in meshes.items():
            for i in range(n):
                mat = _material(f"clutter_{kind}_{i}", 0.0)
                own = mesh.copy()
                own.materials.append(mat)
                ob = bpy.data.objects.new(f"clutter_{kind}_{i}", own)
                ob.hide_render = True
                self.sc.collection.objects.link(ob)
                pool.append((kind, ob, mat))
        return pool

    def apply(self, params: dict) -> None:
        c, li, ma, d = params["camera"], params["light"], params["material"], params["defect"]
        # reset pins
        for (x, y), ob in self.pins.items():
            px, py = pp.pin_xy(x, y, self.product)
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

        # camera: look at the product's target from its azimuth (see product_params), then jitter
        t = math.radians(c["tilt_deg"])
        aim = self.product["camera"]
        target = Vector((c["dx"] + aim["target_dx"], c["dy"] + aim["target_dy"], TARGET_Z))
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

        placed = {"box": [], "cylinder": []}
        for item in params.get("clutter", []):
            placed[item["kind"]].append(item)
        for kind, ob, mat in self.clutter:
            if not placed[kind]:
                ob.hide_render = True
                continue
            item = placed[kind].pop()
            ob.hide_render = False
            ob.location = (item["x"], item["y"], -pp.HOUSING_THICK)
            ob.scale = (item["sx"], item["sy"], item["height"])
            ob.rotation_euler = (0.0, 0.0, math.radians(item["angle_deg"]))
            _bsdf(mat).inputs["Base Color"].default_value = (*item["rgb"], 1.0)

    def framing(self, params: dict) -> dict:
        """How the pins sit in the frame of this image: the smallest distance of a visible pin point (its top and
        where it leaves the housing) from the frame border, as a share of the frame (< 0: cut by the border); the
        angles of the part's columns and rows from the image's vertical and horizontal (degrees, 0 = upright);
        and which housing edges the frame cuts."""
        self.apply(params)
        bpy.context.view_layer.update()
        sc, cam, pr = self.sc, self.cam, self.product

        def to_image(co) -> tuple[float, float]:
            v = world_to_camera_view(sc, cam, Vector(co))
            return (v.x, 1.0 - v.y) if v.z > 0 else (float("nan"), float("nan"))   # image y runs down

        margin = 1.0
        for ob in self.pins.values():
            if ob.hide_render:
                continue
            mw = ob.matrix_world
            z1 = pr["pin_height"]
            for v in ob.data.vertices:
                if abs(v.co.z - z1) > 1e-6:
                    continue
                for z in (z1, 0.0):       # the pin's top, and its section where it leaves the housing top
                    x, y = to_image(mw @ Vector((v.co.x, v.co.y, z)))
                    margin = min(margin, x, 1.0 - x, y, 1.0 - y) if x == x else -1.0
        feet = {(x, y): to_image((*pp.pin_xy(x, y, pr), 0.0)) for x in range(pr["cols"]) for y in range(pr["rows"])}

        def mean(keys):
            pts = [feet[k] for k in keys]
            return sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)

        cols, rows = range(pr["cols"]), range(pr["rows"])
        top, bottom = mean([(x, 0) for x in cols]), mean([(x, pr["rows"] - 1) for x in cols])
        left, right = mean([(0, y) for y in rows]), mean([(pr["cols"] - 1, y) for y in rows])
        col_angle = math.degrees(math.atan2(bottom[0] - top[0], bottom[1] - top[1])) if pr["rows"] > 1 else 0.0
        row_angle = math.degrees(math.atan2(right[1] - left[1], right[0] - left[0])) if pr["cols"] > 1 else 0.0
        hx, hy = pp.housing_half(pr)
        edges = {"left": (-hx, 0.0), "right": (hx, 0.0), "top": (0.0, hy), "bottom": (0.0, -hy)}
        cut = []
        for name, (ex, ey) in edges.items():
            x, y = to_image((ex, ey, 0.0))
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                cut.append(name)
        return {"min_margin": round(margin, 4), "col_angle_deg": round(col_angle, 3),
                "row_angle_deg": round(row_angle, 3), "housing_cut": cut}

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
    ap.add_argument("--product", help="the product's settings: a JSON object or a file holding one (default: "
                                      "the reference connector); omitted keys keep the connector's values")
    ap.add_argument("--check-framing", action="store_true",
                    help="render nothing; print one 'FRAME {json}' line per image on how the part sits in the frame")
    a = ap.parse_args(argv)
    classes = [c.strip() for c in a.classes.split(",") if c.strip()]
    if not classes or a.count < 0 or a.start < 0 or a.size < 8:
        ap.error("bad --classes/--count/--start/--size")
    for c in classes:
        if c not in DEFAULT_CLASSES:
            ap.error(f"unknown class {c!r}; known: {', '.join(DEFAULT_CLASSES)}")

    given = None
    if a.product:
        text = a.product
        if not text.lstrip().startswith("{"):
            with open(text) as f:
                text = f.read()
        given = json.loads(text)
    product = pp.resolve_product(given)

    scene = Scene(a.size, a.samples, a.threads, product)
    if a.check_framing:
        for i in range(a.start, a.start + a.count):
            cls = classes[i % len(classes)]
            info = pp.image_params(a.seed, i, cls, product)
            print("FRAME " + json.dumps({"index": i, "class": cls, "cell": info["cell"],
                                         **scene.framing(info["params"])}), flush=True)
        return 0
    out = os.path.abspath(a.out)
    images = []
    t0 = time.perf_counter()
    for i in range(a.start, a.start + a.count):
        cls = classes[i % len(classes)]
        info = pp.image_params(a.seed, i, cls, product)
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
