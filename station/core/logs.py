"""The station's log: Python `logging` to a rotating file in the user data folder, and every thread's
uncaught failure written there with its traceback, so the night shift's problem can be read in the morning."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
from pathlib import Path

LOG_NAME = "station.log"
MAX_BYTES = 2 * 1024 * 1024  # a file of about a shift of warnings; five older ones are kept beside it
BACKUPS = 5
FORMAT = "%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"

logger = logging.getLogger("station")
_handler: logging.handlers.RotatingFileHandler | None = None
_previous_hook = None


def log_dir() -> Path:
    """`STATION_LOG_DIR`, else `logs/` in the user data folder (beside the result log)."""
    env = os.environ.get("STATION_LOG_DIR")
    if env:
        return Path(env)
    from station.core.settings import data_dir

    return data_dir() / "logs"


def log_path() -> Path:
    return log_dir() / LOG_NAME


def current_log_file() -> Path | None:
    """The file this process logs to, or None when the log could not be opened."""
    return Path(_handler.baseFilename) if _handler is not None else None


class _StderrLine(logging.Handler):
    """What Python printed before the log file was set up (warnings on stderr), kept, but as one line each: the
    traceback goes to the file. The command line's own errors are left out (it prints them itself)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "station.cli":
            return
        try:
            sys.stderr.write(" ".join(record.getMessage().split())[:500] + "\n")  # the stream of the moment
        except (OSError, ValueError):  # stderr closed or gone (a GUI started without a console): the file has it
            pass


_stderr = _StderrLine()


def _level() -> int:
    name = os.environ.get("STATION_LOG_LEVEL", "INFO").upper()
    level = logging.getLevelName(name)
    return level if isinstance(level, int) else logging.INFO


def setup_logging() -> tuple[Path | None, str]:
    """Log to the rotating file and catch every thread's uncaught failure; (the file, '') or (None, why not).

    A folder that cannot be written never stops the station: it runs on, and the caller shows why there is
    no log. Calling it again is harmless (one handler, one hook)."""
    global _handler
    install_thread_hook()
    if _handler is not None:
        return current_log_file(), ""
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS,
                                                       encoding="utf-8", delay=False)
    except OSError as exc:
        return None, f"no log file: cannot write {path} ({exc.strerror or exc})"
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.addHandler(_stderr)
    if root.getEffectiveLevel() > _level():
        root.setLevel(_level())
    _handler = handler
    from station import __version__

    logger.info("station %s started (pid %d, Python %s, %s): %s", __version__, os.getpid(),
                sys.version.split()[0], "bundle" if getattr(sys, "frozen", False) else "source",
                " ".join(sys.argv[1:]) or "gui")
    return path, ""


def close_logging() -> None:
    """Detach the file handler (tests, and a clean exit)."""
    global _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        logging.getLogger().removeHandler(_stderr)
        _handler.close()
        _handler = None


def _log_thread_failure(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is not SystemExit:
        name = args.thread.name if args.thread is not None else "unknown thread"
        logger.error("thread %s failed: %s: %s", name, args.exc_type.__name__, args.exc_value,
                     exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
    if _previous_hook is not None:
        _previous_hook(args)


def install_thread_hook() -> None:
    """Write every thread's uncaught exception to the log with its traceback, then hand it on to the hook
    that was there before (Python's prints it on stderr)."""
    global _previous_hook
    if threading.excepthook is not _log_thread_failure:
        _previous_hook = threading.excepthook
        threading.excepthook = _log_thread_failure


def uninstall_thread_hook() -> None:
    global _previous_hook
    if threading.excepthook is _log_thread_failure:
        threading.excepthook = _previous_hook or threading.__excepthook__
        _previous_hook = None
