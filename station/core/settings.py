"""The station's own settings (source, recipe, overlay look), kept as versioned JSON in the platform's
config folder, with STATION_* environment overrides. A broken file never blocks the start: it is set
aside as `settings.json.bad-<timestamp>` and the defaults are used, with a message for the user.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from station.core.errors import StationError
from station.core.jsonio import load_json_file

logger = logging.getLogger(__name__)

SETTINGS_VERSION = 1
SETTINGS_FILE = "settings.json"
MAX_SETTINGS_BYTES = 1024 * 1024
ENV_PREFIX = "STATION_"
MAX_TEXT = 4096  # a path, a URL or a source name; longer is not a setting but damage


class SettingsError(StationError):
    """A STATION_* environment variable the settings cannot take (a file is set aside instead)."""


def config_dir() -> Path:
    """`STATION_CONFIG_DIR` (tests, portable installs), else the platform's user config folder."""
    env = os.environ.get("STATION_CONFIG_DIR")
    if env:
        return Path(env)
    from platformdirs import user_config_dir

    return Path(user_config_dir("inspection-station", appauthor=False))


def data_dir() -> Path:
    """`STATION_DATA_DIR`, else the platform's user data folder (result log, image archive)."""
    env = os.environ.get("STATION_DATA_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("inspection-station", appauthor=False))


class StationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_assignment=True)

    version: int = SETTINGS_VERSION
    source: str = Field("demo", max_length=MAX_TEXT, description="demo, camera:N, a video file or an image folder")
    recipe: str | None = Field(None, max_length=MAX_TEXT, description="one recipe folder for the line; None: see "
                               "recipes")
    # the line's setup (DESIGN 2.3): the recipes run on every frame and how their verdicts combine
    recipes: list[Annotated[str, Field(max_length=MAX_TEXT)]] | None = Field(None, max_length=8, description="recipe folders run together on every frame; "
                                      "None (and no recipe): the bundled ViT and RT-attention recipes")
    combine: str = Field("cross-check", max_length=MAX_TEXT, pattern="^(cross-check|either-ng|both-ng|only:.+)$",
                         description="how the recipes' verdicts combine: cross-check (disagreement gives REVIEW), "
                                     "either-ng, both-ng or only:NAME")
    # measured with `station bench --gui` and both bundled recipes on a 2-core PC (docs/gui-bench.md): one torch
    # thread and the engines one after the other keep 30 fps with the shortest capture-to-painted tail
    engine_threads: int = Field(1, ge=0, le=256, description="CPU threads of a torch engine (the ViT) on the live "
                                "line, beside the other engines and the window; 0: torch's default (one per core)")
    parallel_engines: bool = Field(False, description="run the line's engines on a thread each instead of one "
                                   "after the other")
    demo_fps: float = Field(30.0, gt=0, le=240)
    # the live line's camera watchdog (station/core/watchdog.py)
    stall_after_frames: float = Field(10.0, ge=2, le=1000, description="no new frame for this many frame "
                                      "intervals: the camera is shown as stalled and no verdict is kept on screen")
    stall_min_s: float = Field(1.0, ge=0.1, le=60, description="... and never sooner than this many seconds")
    frozen_after_s: float = Field(2.0, ge=0.2, le=600, description="the same frame, bit for bit, for this many "
                                  "seconds: the camera is shown as frozen (its repeats are never inspected)")
    overlay_visible: bool = True
    overlay_opacity: float = Field(0.55, ge=0.0, le=1.0)
    recent_results: int = Field(12, ge=1, le=100)
    last_ng_kept: int = Field(10, ge=1, le=100)
    results_db: str | None = Field(None, max_length=MAX_TEXT, description="SQLAlchemy URL of the result log; None: results.db in the "
                                                     "user data folder")
    archive: str = Field("ng", pattern="^(none|ng|all)$", description="which inspected images are archived")
    archive_dir: str | None = Field(None, max_length=MAX_TEXT, description="image archive folder; None: archive/ in the user data folder")
    # the result log when it fails, and how long it keeps what it wrote (0: no limit of that kind)
    on_log_failure: str = Field("continue", pattern="^(stop|continue)$",
                                description="when results cannot reach the database: stop inspecting, or "
                                            "continue and keep them in the spool file")
    archive_keep_days: float = Field(30.0, ge=0, le=36500, description="archived images older than this are removed")
    archive_max_gb: float = Field(50.0, ge=0, le=1e6, description="the oldest archived images go above this total")
    results_keep_days: float = Field(0.0, ge=0, le=36500, description="result rows older than this are removed")
    results_db_max_mb: float = Field(4096.0, ge=0, le=1e7, description="the oldest rows go above this (SQLite)")
    min_free_disk_mb: float = Field(2048.0, ge=0, le=1e7, description="the oldest archived images go while the "
                                                                       "disk has less free space than this")

    # the line (station/plc, station/core/trigger.py; docs/integration.md). The plc_*, opcua_* and trigger
    # settings are the integrator's: changed only in engineer mode, and audited (station/plc/settings_guard.py)
    trigger_mode: str = Field("free-run", pattern="^(free-run|software|plc|hold)$",
                              description="what makes a part: every frame, a software or PLC trigger, or hold mode")
    hold_motion_threshold: float = Field(0.02, gt=0, lt=1, description="hold mode: mean grey change between frames "
                                         "above which the scene moves (0..1)")
    hold_presence_threshold: float = Field(0.04, gt=0, lt=1, description="hold mode: change from the empty scene "
                                           "above which a part is in view (0..1)")
    hold_settle_frames: int = Field(3, ge=1, le=1000, description="hold mode: still frames before a part is inspected")
    plc_enabled: bool = Field(False, description="serve the PLC over Modbus TCP")
    plc_host: str = Field("127.0.0.1", max_length=255, pattern=r"^[0-9A-Za-z.:\-]+$",
                          description="address the Modbus (and OPC UA) server binds; 0.0.0.0: every interface")
    plc_port: int = Field(5020, ge=1, le=65535, description="Modbus TCP port (502 needs administrator rights)")
    plc_unit_id: int = Field(1, ge=0, le=247, description="Modbus unit ID the station answers (0: any)")
    plc_status_address: int = Field(0, ge=0, le=65535 - 22, description="first holding register of the status block")
    plc_command_address: int = Field(100, ge=0, le=65535 - 6, description="first holding register of the command block")
    plc_result_timeout_s: float = Field(5.0, ge=0.1, le=600, description="a part with no logged result by then is "
                                        "answered NO_RESULT")
    plc_recipes: dict[int, str] = Field(default_factory=dict, max_length=1000,
                                        description="recipe numbers the PLC may select, 1..65535 -> recipe folder")
    opcua_enabled: bool = Field(False, description="also serve state, last result and counters over OPC UA")
    opcua_port: int = Field(4840, ge=1, le=65535)

    @field_validator("plc_recipes")
    @classmethod
    def _recipe_numbers(cls, value: dict[int, str]) -> dict[int, str]:
        for number, folder in value.items():
            if not 1 <= number <= 65535:
                raise ValueError(f"recipe number {number} is not 1..65535")
            if not isinstance(folder, str) or not 0 < len(folder) <= MAX_TEXT:
                raise ValueError(f"recipe {number}: a folder name of 1..{MAX_TEXT} characters")
        return value

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings, file_secret_settings):
        # the environment wins over the file (the file's values arrive as init arguments)
        return env_settings, init_settings


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older settings document up to SETTINGS_VERSION (version 1 is the first)."""
    data = dict(data)
    data["version"] = SETTINGS_VERSION
    return data


def make_settings(**values: Any) -> StationSettings:
    """StationSettings from `values` and the environment; a bad STATION_* variable is one-line SettingsError."""
    try:
        return StationSettings(**values)
    except ValidationError as exc:
        raise SettingsError(_first_error(exc, "the settings")) from None


def check_environment() -> None:
    """SettingsError (one line, naming the variable) when a STATION_* variable cannot be used as its setting."""
    try:
        StationSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        name = next((k for k in os.environ if k.upper() == f"{ENV_PREFIX}{field}".upper()), ENV_PREFIX + field.upper())
        value = os.environ.get(name, "")
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise SettingsError(f"environment variable {name}={shown!r} cannot be used: {first['msg']}; fix or unset "
                            "it") from None


def _first_error(exc: ValidationError, where: str) -> str:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "document"
    return f"{where}: {field}: {first['msg']}"


def load_settings(folder: Path | None = None) -> tuple[StationSettings, str]:
    """The settings and a message for the user ("" when all went well).

    A settings file that cannot be used in any way (unreadable, not JSON, nested too deep, wrong types, from
    a newer station) is set aside, never deleted, and the defaults are used: the station always starts. A bad
    STATION_* environment variable is SettingsError: it is not a file that can be set aside, and whoever set
    it is told which one."""
    check_environment()
    path = (folder or config_dir()) / SETTINGS_FILE
    if not path.is_file():
        return StationSettings(), ""
    try:
        data = load_json_file(path, max_bytes=MAX_SETTINGS_BYTES)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        version = data.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError(f"version must be a whole number, not {str(version)[:20]!r}")
        if version > SETTINGS_VERSION:
            raise ValueError(f"written by a newer station (settings version {version})")
        return StationSettings(**_migrate(data)), ""
    except ValidationError as exc:
        why = _first_error(exc, "invalid")
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, the station starts without it
        why = " ".join(str(exc).split())[:200] or type(exc).__name__
    logger.warning("settings file %s cannot be used: %s", path, why)
    where = _set_aside(path)
    return StationSettings(), f"The settings file {path} could not be used ({why}); {where} and defaults are used."


def _set_aside(path: Path) -> str:
    """Rename a broken file to `NAME.bad-<timestamp>` (never over an earlier one); a sentence saying where."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(100):
        bad = path.with_name(f"{path.name}.bad-{stamp}" + (f"-{n}" if n else ""))
        if bad.exists() or bad.is_symlink():
            continue
        try:
            os.replace(path, bad)
        except OSError as exc:
            logger.warning("cannot set aside %s: %s", path, exc)
            return f"it could not be set aside ({exc.strerror or exc})"
        return f"it was set aside as {bad.name}"
    return "it could not be set aside (too many set-aside files of this second)"


def save_settings(settings: StationSettings, folder: Path | None = None) -> Path:
    """Write atomically (a crash mid-write leaves the old file, never half a file)."""
    folder = folder or config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SETTINGS_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(settings.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
