"""Fuzz the command line with generated bad files, each run in a process of its own under an address-space limit.

    python scripts/fuzz_inputs.py [--files 1026] [--seed 19] [--limit-mb 1024] [--out fuzz-report.json]

Files come from tests/badfiles.py (truncated, header lies up to 100000 x 100000 px, random bytes, 1 x 1000,
grey + alpha, signed and float TIFF, a PNG of 81 megapixels of zeros, ...). Each file goes in turn through
`station inspect --source FILE`, `station eval` on a folder holding it and `station train` on four good demo
images and it; then bad JSON through recipes (`inspect --recipe`) and settings (`load_settings`). Every run is a
child forked from this process (imports done once) with RLIMIT_AS set, so a decoder that reaches for gigabytes
fails there. The report counts tracebacks, internal errors, crashes (signals), hangs, runs over the memory limit
(MemoryError, or a resident peak above it) and errors not on one line, and prints one JSON object.
Exit status 0 when all are zero.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # children are forked: no thread pools to inherit half-way
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import cv2  # noqa: E402

cv2.setNumThreads(1)

from badfiles import KIND_COUNT, bad_images, bad_json_texts  # noqa: E402
from station.cli import main as station_main  # noqa: E402
from station.core.resources import bundled_recipe, demo_split  # noqa: E402
from station.core.settings import load_settings  # noqa: E402

TIMEOUT_S = 120


def child(argv: list[str] | None, settings_dir: Path | None, out: Path, err: Path, limit: int) -> None:
    """In the forked child: limit the address space, send stdout/stderr to files, run, exit with the code."""
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.alarm(TIMEOUT_S)
    fd_out, fd_err = os.open(out, os.O_WRONLY | os.O_CREAT), os.open(err, os.O_WRONLY | os.O_CREAT)
    os.dup2(fd_out, 1)
    os.dup2(fd_err, 2)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the child's own streams, flushed at exit
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    code = 0
    try:
        if settings_dir is not None:
            os.environ["STATION_CONFIG_DIR"] = str(settings_dir)
            _, message = load_settings()
            print(message, file=sys.stderr)
        else:
            code = station_main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException:  # noqa: BLE001 - what the fuzz looks for: printed, and counted by the parent
        import traceback

        traceback.print_exc()
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_one(kind: str, command: str, argv: list[str] | None, work: Path, limit: int,
            settings_dir: Path | None = None) -> dict:
    out, err = work / "out.txt", work / "err.txt"
    for f in (out, err):
        f.unlink(missing_ok=True)
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        child(argv, settings_dir, out, err, limit)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - t0
    stdout = out.read_text(errors="replace") if out.exists() else ""
    stderr = err.read_text(errors="replace") if err.exists() else ""
    rec = {"kind": kind, "command": command, "seconds": round(seconds, 3), "maxrss_mb": usage.ru_maxrss // 1024}
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        rec["problem"] = "hang" if sig == signal.SIGALRM else f"crash (signal {sig})"
        return rec
    rec["code"] = code = os.WEXITSTATUS(status)
    problems = []
    if "Traceback" in stderr or code == 99:
        problems.append("traceback")
    if "internal error" in stderr or code == 3:
        problems.append("internal error")
    if "MemoryError" in stdout + stderr or "not enough memory" in stdout + stderr or \
            usage.ru_maxrss * 1024 > limit:
        problems.append("over the memory limit")
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("station: error:")]
    if code == 2 and (len(errors) != 1 or lines[-1] != errors[0]):
        problems.append("error not one line")
    if code not in (0, 2):
        problems.append(f"exit {code}")
    for line in stdout.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            if command != "eval":
                problems.append("stdout not JSON lines")
            break
        if isinstance(item, dict) and "\n" in str(item.get("error") or ""):
            problems.append("error not one line")
    if problems:
        rec["problem"] = ", ".join(sorted(set(problems)))
        rec["stderr_tail"] = stderr[-400:]
    return rec


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=38 * KIND_COUNT, help="bad image files to generate (>= 1000)")
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--limit-mb", type=int, default=1024, help="address-space limit of each run, MiB")
    p.add_argument("--out", type=Path, help="write every run's record here (JSON)")
    args = p.parse_args()
    limit = args.limit_mb << 20
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="station-fuzz-") as tmp:
        root = Path(tmp)
        goods = sorted(demo_split("train").joinpath("good").iterdir())[:4]
        work = root / "work"
        work.mkdir()
        t0 = time.perf_counter()
        for i, (name, data) in enumerate(bad_images(args.files, args.seed)):
            kind = name.split("-", 1)[1].rsplit(".", 1)[0]
            path = root / "files" / name
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            step = i % 3
            if step == 0:
                records.append(run_one(kind, "inspect", ["inspect", "--source", str(path)], work, limit))
            elif step == 1:
                folder = root / "eval" / f"{i:04d}" / "good"
                folder.mkdir(parents=True)
                shutil.copy(path, folder / name)
                records.append(run_one(kind, "eval", ["eval", "--data", str(folder.parent), "--json"], work, limit))
                shutil.rmtree(folder.parent)
            else:
                folder = root / "train" / f"{i:04d}" / "good"
                folder.mkdir(parents=True)
                for g in goods:
                    shutil.copy(g, folder / g.name)
                shutil.copy(path, folder / name)
                out = root / "train" / f"{i:04d}-recipe"
                records.append(run_one(kind, "train", ["train", "--data", str(folder.parent), "--out", str(out),
                                                       "--quiet"], work, limit))
                shutil.rmtree(folder.parent)
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(out.with_name(out.name + ".setup"), ignore_errors=True)
            path.unlink()
        for kind, text in bad_json_texts(args.seed):
            recipe = root / "recipe"
            shutil.rmtree(recipe, ignore_errors=True)
            shutil.copytree(bundled_recipe("rt"), recipe)
            (recipe / "recipe.json").write_text(text, encoding="utf-8", errors="surrogateescape")
            records.append(run_one(f"recipe-{kind}", "inspect", ["inspect", "--recipe", str(recipe), "--source",
                                                                 str(goods[0])], work, limit))
            settings = root / "settings"
            shutil.rmtree(settings, ignore_errors=True)
            settings.mkdir()
            (settings / "settings.json").write_text(text, encoding="utf-8", errors="surrogateescape")
            records.append(run_one(f"settings-{kind}", "settings", None, work, limit, settings_dir=settings))
        elapsed = time.perf_counter() - t0
    problems = Counter()
    for rec in records:
        for what in rec.get("problem", "").split(", "):
            if what:
                problems[what] += 1
    summary = {
        "runs": len(records),
        "bad_image_files": args.files,
        "bad_json_documents": 2 * len(bad_json_texts(args.seed)),
        "by_command": dict(Counter(r["command"] for r in records)),
        "exit_codes": dict(Counter(str(r.get("code", "signal")) for r in records)),
        "tracebacks": problems["traceback"],
        "internal_errors": problems["internal error"],
        "crashes": sum(n for k, n in problems.items() if k.startswith("crash")),
        "hangs": problems["hang"],
        "over_memory_limit": problems["over the memory limit"],
        "errors_not_one_line": problems["error not one line"],
        "other_problems": {k: n for k, n in problems.items() if k not in
                           ("traceback", "internal error", "hang", "over the memory limit", "error not one line")
                           and not k.startswith("crash")},
        "address_space_limit_mb": args.limit_mb,
        "max_resident_mb": max(r["maxrss_mb"] for r in records),
        "max_seconds": max(r["seconds"] for r in records),
        "seconds": round(elapsed, 1),
        "failing_kinds": sorted({f"{r['command']}:{r['kind']}: {r['problem']}" for r in records if "problem" in r}),
    }
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "runs": records}, indent=1))
    print(json.dumps(summary, indent=1))
    return 0 if not any(k in r for r in records for k in ("problem",)) else 1


if __name__ == "__main__":
    sys.exit(main())
