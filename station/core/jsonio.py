"""JSON from files, settings and the command line, read within bounds: a size limit, a nesting depth limit
checked before parsing (deep nesting is a RecursionError inside `json`), and no NaN or Infinity, which are not
JSON. Every failure is one line in the caller's StationError class."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from station.core.errors import StationError

MAX_DEPTH = 64  # far deeper than any document the station writes (a recipe nests 4 levels)
MAX_JSON_BYTES = 16 * 1024 * 1024
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in `text` (brackets inside strings do not count)."""
    bare = _STRING.sub('""', text).encode("utf-8", errors="replace")
    codes = np.frombuffer(bare, dtype=np.uint8)
    steps = np.zeros(codes.shape, dtype=np.int32)
    steps[(codes == ord("[")) | (codes == ord("{"))] = 1
    steps[(codes == ord("]")) | (codes == ord("}"))] = -1
    return int(np.cumsum(steps).max(initial=0))


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads_bounded(text: str, where: str, error: type[StationError] = StationError, max_depth: int = MAX_DEPTH,
                  max_bytes: int = MAX_JSON_BYTES, allow_nan: bool = False) -> Any:
    """Parse `text` (from `where`, named in messages) as JSON within the bounds, or raise `error`. `allow_nan`
    takes NaN and Infinity, as Python's json.dumps writes them, for files whose reader checks its numbers."""
    if len(text) > max_bytes:
        raise error(f"{where} is too large to be read as JSON ({len(text)} characters, at most {max_bytes})")
    depth = nesting_depth(text)
    if depth > max_depth:
        raise error(f"{where} nests {depth} levels deep, more than the {max_depth} allowed; it is not a file the "
                    "station wrote")
    try:
        return json.loads(text, parse_constant=None if allow_nan else _no_constants)
    except json.JSONDecodeError as exc:
        raise error(f"{where} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # NaN, Infinity, integers of thousands of digits
        message = " ".join(str(exc).split())[:160]
        raise error(f"{where} is not valid JSON ({message})") from None


def load_json_file(path: str | Path, error: type[StationError] = StationError, max_depth: int = MAX_DEPTH,
                   max_bytes: int = MAX_JSON_BYTES, allow_nan: bool = False) -> Any:
    """Read a JSON file within the bounds, or raise `error` (one line naming the file)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{path} is too large to be read as JSON ({size} bytes, at most {max_bytes})")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (byte {exc.start})") from None
    return loads_bounded(text, str(path), error, max_depth, max_bytes, allow_nan)
