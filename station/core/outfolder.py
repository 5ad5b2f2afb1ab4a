"""Where a command may write its output folder: never over something it did not make.

`station train --out DIR` replaces a recipe; run by mistake on a folder of images (or on the data folder
itself) it would replace those. An output folder is used only when it does not exist, is empty, or holds
nothing but the files of what is written there (a recipe, a setup); it is never the data folder or a folder
that holds it.
"""

from __future__ import annotations

from pathlib import Path

from station.core.errors import StationError

SHOWN = 3  # files named in the message


def check_out_folder(out: str | Path, own_files: frozenset[str], what: str, data: str | Path | None = None,
                     option: str = "--out") -> Path:
    """`out`, if writing `what` there can delete nothing else; StationError (one line) if it could.

    `own_files`: the names `what` is made of; a folder holding only those is an earlier `what`, replaced."""
    out = Path(out)
    if data is not None:
        check_not_over(out, data, option)
    if not out.exists():
        if out.is_symlink():
            raise StationError(f"{option} {out} is a broken link; give a new folder")
        return out
    if not out.is_dir():
        raise StationError(f"{option} {out} is a file, not a folder; give a new or empty folder for the {what}")
    try:
        entries = sorted(p.name for p in out.iterdir())
    except OSError as exc:
        raise StationError(f"cannot list {option} {out}: {exc.strerror or exc}") from None
    foreign = [name for name in entries if name not in own_files or not (out / name).is_file()
               or (out / name).is_symlink()]
    if foreign:
        names = ", ".join(foreign[:SHOWN]) + (f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else "")
        raise StationError(f"{option} {out} is not empty and not a {what} (it holds {names}); nothing was "
                           f"written: give a new or empty folder, or a {what} to replace")
    return out


def check_not_over(out: str | Path, data: str | Path, option: str = "--out") -> None:
    """StationError if `out` is the data folder or a folder that holds it."""
    out, data = Path(out), Path(data)
    try:
        o, d = out.resolve(), data.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a loop of links
        raise StationError(f"cannot resolve {option} {out}: {exc}") from None
    if o == d or o in d.parents:
        raise StationError(f"{option} {out} is the data folder {data} or holds it; write the output elsewhere")
