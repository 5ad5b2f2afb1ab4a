"""`station synth`: render a product's data set (the reference connector by default) with Blender (bpy).

bpy pins its own Python (3.11) and ``numpy<2``, so it lives in an environment of its own and
``render_connector.py`` (next to this file) runs in that interpreter as a subprocess.  This
module never imports bpy; a product's settings are checked by ``station.synth.product``.

    from station.synth import render_dataset
    render_dataset(Path("resources/demo/train"), count=1920, seed=1)
    render_dataset(Path("/tmp/pins-2x10/train"), count=320, seed=11, product={"cols": 2, "rows": 10})

Image ``i`` has class ``classes[i % len(classes)]`` and its random choices are drawn from
``(seed, i)`` alone, so the split over worker processes does not change the images.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Sequence

__all__ = [
    "SynthError", "KNOWN_CLASSES", "RENDER_SCRIPT", "ENV_VAR",
    "class_for", "plan_classes", "split_work", "merge_fragments", "find_blender_python",
    "render_dataset", "check_framing",
]

KNOWN_CLASSES = ("good", "pushed", "tilted", "missing")
GRID = {"cols": 3, "rows": 9}
ENV_VAR = "STATION_BLENDER_PYTHON"
RENDER_SCRIPT = Path(__file__).with_name("render_connector.py")
INSTALL_HINT = (
    "install Blender's Python module in an environment of its own and point the station at it:\n"
    "    python3.11 -m venv ~/bpyenv && ~/bpyenv/bin/pip install bpy\n"
    f"    export {ENV_VAR}=~/bpyenv/bin/python\n"
    "(bpy 5.x needs Python 3.11 exactly and numpy<2, which is why it is kept out of the "
    "station's own environment)"
)


class SynthError(Exception):
    """Rendering the synthetic data set failed (no bpy interpreter, a renderer crash, ...)."""


# ----------------------------------------------------------------------------- pure logic

def _check_classes(classes: Iterable[str]) -> tuple[str, ...]:
    cl = tuple(classes)
    if not cl:
        raise SynthError("classes must not be empty")
    bad = [c for c in cl if c not in KNOWN_CLASSES]
    if bad:
        raise SynthError(f"unknown class(es) {bad}; known: {', '.join(KNOWN_CLASSES)}")
    if len(set(cl)) != len(cl):
        raise SynthError(f"duplicate class in {list(cl)}")
    return cl


def class_for(index: int, classes: Sequence[str] = KNOWN_CLASSES) -> str:
    """Class of image ``index``: ``classes[index % len(classes)]`` (balanced for any count)."""
    if index < 0:
        raise ValueError("index must be >= 0")
    return classes[index % len(classes)]


def image_file(index: int, classes: Sequence[str] = KNOWN_CLASSES) -> str:
    """Path of image ``index`` relative to the set: ``<class>/<class>_<index:05d>.png`` (the renderer,
    which runs in Blender's Python without this package, writes the same name)."""
    cls = class_for(index, classes)
    return f"{cls}/{cls}_{index:05d}.png"


def plan_classes(count: int, classes: Sequence[str] = KNOWN_CLASSES) -> dict[str, int]:
    """How many images of each class ``count`` images give."""
    out = {c: 0 for c in classes}
    for i in range(count):
        out[class_for(i, classes)] += 1
    return out


def split_work(count: int, workers: int) -> list[tuple[int, int]]:
    """Split images ``0..count-1`` into at most ``workers`` contiguous (start, n) chunks."""
    if count < 0:
        raise ValueError("count must be >= 0")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    workers = min(workers, count) or 1
    base, extra = divmod(count, workers)
    chunks, start = [], 0
    for w in range(workers):
        n = base + (1 if w < extra else 0)
        if n:
            chunks.append((start, n))
        start += n
    return chunks


def split_todo(todo: Sequence[bool], workers: int) -> list[tuple[int, int]]:
    """Contiguous (start, n) chunks covering every image, cut so that each holds about the same number of
    images still to render (``todo[i]``); kept images cost nothing, so an even split by count would leave
    the workers on the new images alone."""
    count = len(todo)
    total = int(sum(bool(t) for t in todo))
    if total == 0 or count == 0:
        return split_work(count, 1) if count else []
    workers = max(1, min(workers, total))
    chunks, start, done = [], 0, 0
    for w in range(1, workers):
        target = round(total * w / workers)
        end = start
        while end < count and done < target:
            done += bool(todo[end])
            end += 1
        if end > start:
            chunks.append((start, end - start))
            start = end
    chunks.append((start, count - start))
    return [c for c in chunks if c[1] > 0]


def merge_fragments(fragments: Iterable[dict], *, count: int, seed: int, size: int,
                    classes: Sequence[str] = KNOWN_CLASSES, product: dict | None = None) -> dict:
    """Merge the renderer's ``manifest-<start>.json`` fragments into the data-set manifest.

    Checks that every image 0..count-1 appears exactly once with the expected class, file
    name and cell (``[col, row]`` of the product's grid, or None for good).  ``product`` (its
    settings, the connector's by default) is recorded in the manifest.
    """
    grid = {"cols": product["cols"], "rows": product["rows"]} if product else dict(GRID)
    by_index: dict[int, dict] = {}
    for frag in fragments:
        for im in frag.get("images", []):
            i = int(im["index"])
            if i in by_index:
                raise SynthError(f"image {i} appears in two manifest fragments")
            by_index[i] = im
    missing = [i for i in range(count) if i not in by_index]
    extra = sorted(i for i in by_index if not 0 <= i < count)
    if missing or extra:
        raise SynthError(f"manifest fragments do not cover 0..{count - 1}: "
                         f"missing {missing[:10]}{'...' if len(missing) > 10 else ''}, extra {extra[:10]}")
    images = []
    for i in range(count):
        im = by_index[i]
        cls = class_for(i, classes)
        if im.get("class") != cls:
            raise SynthError(f"image {i}: class {im.get('class')!r}, expected {cls!r}")
        if im.get("file") != image_file(i, classes):
            raise SynthError(f"image {i}: unexpected file name {im.get('file')!r}")
        cell = im.get("cell")
        if (cls == "good") != (cell is None):
            raise SynthError(f"image {i}: class {cls!r} with cell {cell!r}")
        if cell is not None:
            c, r = cell
            if not (0 <= c < grid["cols"] and 0 <= r < grid["rows"]):
                raise SynthError(f"image {i}: cell {cell!r} outside the {grid['cols']}x{grid['rows']} grid")
            cell = [int(c), int(r)]
        images.append({"index": i, "file": im["file"], "class": cls, "cell": cell,
                       "params": im.get("params", {})})
    out = {"schema": 1, "generator": "station synth", "seed": seed, "size": size,
           "grid": grid, "classes": list(classes), "count": count}
    if product:
        out["product"] = product
    out["images"] = images
    return out


# ----------------------------------------------------------------------------- interpreter

def _has_bpy(python: str, timeout: float = 180.0) -> tuple[bool, str]:
    try:
        p = subprocess.run([python, "-c", "import bpy"], capture_output=True, text=True,
                           timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        return False, str(e)
    err = (p.stderr or "").strip().splitlines()
    return p.returncode == 0, (err[-1] if err else "")


def find_blender_python(python: str | None = None) -> str:
    """An interpreter that can ``import bpy``: ``python``, else $STATION_BLENDER_PYTHON, else
    ``sys.executable`` if bpy is importable there; otherwise SynthError with install hints."""
    for source, cand in (("python argument", python), (f"${ENV_VAR}", os.environ.get(ENV_VAR))):
        if cand:
            exe = shutil.which(os.path.expanduser(cand)) or os.path.expanduser(cand)
            ok, why = _has_bpy(exe)
            if not ok:
                raise SynthError(f"{source} {cand!r} cannot import bpy ({why or 'not runnable'});\n"
                                 + INSTALL_HINT)
            return exe
    if importlib.util.find_spec("bpy") is not None:
        return sys.executable
    raise SynthError(f"no Python interpreter with bpy (Blender as a module) found: "
                     f"{ENV_VAR} is not set and {sys.executable} has no bpy;\n" + INSTALL_HINT)


# ----------------------------------------------------------------------------- driver

def render_dataset(out: Path, count: int, seed: int, size: int = 256,
                   classes: Sequence[str] = KNOWN_CLASSES, workers: int = 2,
                   python: str | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   samples: int | None = None, keep_existing: bool = False, product=None) -> Path:
    """Render ``count`` images of ``product`` into ``out/<class>/`` and write ``out/manifest.json``.

    ``product`` is anything ``station.synth.product.load_product`` takes: None or "demo" (the
    reference connector), a dict of settings, a Product, a JSON file or a suite product's name.

    ``progress(done, total)`` is called (from reader threads) after every image. With
    ``keep_existing`` an image already at its path (a whole PNG) is kept: images depend only on seed
    and index, so a set can grow (a larger count, the same seed) or an interrupted render resume.
    Returns the manifest path.  Raises SynthError if no bpy interpreter is found or a
    renderer process fails (with the tail of its stderr).
    """
    from station.synth.product import load_product

    out = Path(out)
    settings = load_product(product)
    # the connector renders without --product, exactly as before products existed
    product_arg = None if settings.is_demo() else json.dumps(settings.settings(), separators=(",", ":"))
    classes = _check_classes(classes)
    if count < 0:
        raise SynthError("count must be >= 0")
    if size < 8:
        raise SynthError("size must be >= 8")
    if workers < 1:
        raise SynthError("workers must be >= 1")
    chunks = split_work(count, workers) if count else []
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("manifest-*.json"):
        old.unlink()
    if chunks:
        exe = find_blender_python(python)
        if keep_existing:
            _check_same_settings(out / "manifest.json", seed, size, settings.settings())
            todo = []
            for i in range(count):
                path = out / image_file(i, classes)
                if path.exists() and not is_whole_png(path):
                    path.unlink()  # cut short (the renderer killed while writing): render it again
                todo.append(not path.exists())
            chunks = split_todo(todo, workers)
        threads = max(1, (os.cpu_count() or 1) // len(chunks))
        _run_workers(exe, out, chunks, seed, size, classes, threads, samples, count, progress, keep_existing,
                     product_arg)
    fragments = []
    for start, _ in chunks:
        f = out / f"manifest-{start}.json"
        try:
            fragments.append(json.loads(f.read_text()))
        except (OSError, ValueError) as e:
            raise SynthError(f"renderer wrote no readable manifest fragment {f}: {e}") from e
    manifest = merge_fragments(fragments, count=count, seed=seed, size=size, classes=classes,
                               product=settings.settings())
    path = out / "manifest.json"
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)
    for start, _ in chunks:
        (out / f"manifest-{start}.json").unlink(missing_ok=True)
    return path


def _check_same_settings(manifest: Path, seed: int, size: int, product: dict) -> None:
    """Refuse to keep images rendered with another seed, size or product: the set would mix two of them."""
    if not manifest.is_file():
        return
    try:
        old = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise SynthError(f"cannot read {manifest} to check the images to keep: {exc}") from exc
    from station.synth.product_params import DEFAULT_PRODUCT

    was = (old.get("seed"), old.get("size"), old.get("product", DEFAULT_PRODUCT))
    if was != (seed, size, product):
        raise SynthError(f"{manifest.parent} holds images of another seed, size or product "
                         f"(seed {old.get('seed')}, size {old.get('size')}, product "
                         f"{was[2].get('name') if isinstance(was[2], dict) else was[2]!r}); "
                         "render into another folder or drop --keep-existing")


def is_whole_png(path: Path) -> bool:
    """True for a file that starts with the PNG signature and ends with the IEND chunk."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(0, os.SEEK_END)
            if f.tell() < 20:
                return False
            f.seek(-12, os.SEEK_END)
            tail = f.read(12)
    except OSError:
        return False
    return head == b"\x89PNG\r\n\x1a\n" and tail[4:8] == b"IEND"


def _run_workers(exe, out, chunks, seed, size, classes, threads, samples, total, progress, keep_existing=False,
                 product_arg=None):
    lock = threading.Lock()
    done = [0]
    procs = []

    def pump_stdout(p):
        for line in p.stdout:
            if line.startswith("SYNTH ") and progress is not None:
                with lock:
                    done[0] += 1
                    n = done[0]
                progress(n, total)

    def pump_stderr(p, tail):
        for line in p.stderr:
            tail.append(line.rstrip("\n"))

    try:
        for start, n in chunks:
            cmd = [exe, str(RENDER_SCRIPT), "--out", str(out), "--count", str(n),
                   "--seed", str(seed), "--start", str(start), "--size", str(size),
                   "--classes", ",".join(classes), "--threads", str(threads)]
            if samples:
                cmd += ["--samples", str(samples)]
            if keep_existing:
                cmd.append("--keep-existing")
            if product_arg:
                cmd += ["--product", product_arg]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, bufsize=1)
            tail: deque[str] = deque(maxlen=40)
            ts = [threading.Thread(target=pump_stdout, args=(p,), daemon=True),
                  threading.Thread(target=pump_stderr, args=(p, tail), daemon=True)]
            for t in ts:
                t.start()
            procs.append((start, n, p, tail, ts))
        failed = []
        for start, n, p, tail, ts in procs:
            rc = p.wait()
            for t in ts:
                t.join()
            if rc != 0:
                failed.append((start, n, rc, tail))
        if failed:
            start, n, rc, tail = failed[0]
            lines = "\n".join(list(tail)[-20:]) or "(no stderr)"
            raise SynthError(f"renderer for images {start}..{start + n - 1} exited with code {rc} "
                             f"({len(failed)} of {len(procs)} workers failed); last stderr lines:\n{lines}")
    finally:
        for _, _, p, _, ts in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            for t in ts:
                t.join(timeout=5)
            for stream in (p.stdout, p.stderr):
                if stream is not None:
                    stream.close()


def check_framing(product=None, seed: int = 0, count: int = 8, start: int = 0, size: int = 256,
                  classes: Sequence[str] = KNOWN_CLASSES, python: str | None = None,
                  timeout: float = 900.0) -> list[dict]:
    """How the part sits in the frame of images ``start .. start+count-1`` (nothing is rendered): one dict per
    image with ``min_margin`` (the closest a visible pin point comes to the frame border, as a share of the
    frame; below 0 it is cut), ``col_angle_deg`` / ``row_angle_deg`` (the part's columns from the image's
    vertical, its rows from the horizontal) and ``housing_cut`` (the housing edges the frame cuts)."""
    from station.synth.product import load_product

    settings = load_product(product)
    classes = _check_classes(classes)
    exe = find_blender_python(python)
    cmd = [exe, str(RENDER_SCRIPT), "--out", os.devnull, "--count", str(count), "--seed", str(seed),
           "--start", str(start), "--size", str(size), "--classes", ",".join(classes), "--check-framing",
           "--product", json.dumps(settings.settings(), separators=(",", ":"))]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SynthError(f"framing check failed to run: {exc}") from exc
    if p.returncode != 0:
        tail = "\n".join(p.stderr.strip().splitlines()[-20:]) or "(no stderr)"
        raise SynthError(f"framing check exited with code {p.returncode}; last stderr lines:\n{tail}")
    return [json.loads(line[len("FRAME "):]) for line in p.stdout.splitlines() if line.startswith("FRAME ")]
