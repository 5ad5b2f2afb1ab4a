"""Settings: versioned JSON in the config folder, environment overrides, a broken file never blocks."""

from __future__ import annotations

import json

import pytest

from station.core.settings import SETTINGS_FILE, StationSettings, load_settings, save_settings


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path))
    return tmp_path


def test_defaults_without_a_file(config):
    settings, message = load_settings()
    assert message == ""
    assert settings.source == "demo" and settings.version == 1


def test_round_trip(config):
    save_settings(StationSettings(source="camera:1", overlay_opacity=0.3))
    data = json.loads((config / SETTINGS_FILE).read_text())
    assert data["version"] == 1
    settings, message = load_settings()
    assert (settings.source, settings.overlay_opacity, message) == ("camera:1", 0.3, "")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"version": 1, "overlay_opacity": 7}',
                                     '{"version": 99}', b"\xff\xfe\x00{"])
def test_broken_file_is_set_aside_and_defaults_used(config, content):
    data = content if isinstance(content, bytes) else content.encode()
    (config / SETTINGS_FILE).write_bytes(data)
    settings, message = load_settings()
    assert settings == StationSettings()
    assert "set aside" in message and SETTINGS_FILE in message
    assert not (config / SETTINGS_FILE).exists()
    assert len(list(config.glob(f"{SETTINGS_FILE}.bad-*"))) == 1


def test_environment_overrides_the_file(config, monkeypatch):
    save_settings(StationSettings(demo_fps=10))
    monkeypatch.setenv("STATION_DEMO_FPS", "50")
    settings, _ = load_settings()
    assert settings.demo_fps == 50


def test_unknown_keys_from_a_newer_minor_change_are_ignored(config):
    (config / SETTINGS_FILE).write_text(json.dumps({"version": 1, "source": "demo", "future_thing": 3}))
    settings, message = load_settings()
    assert message == "" and settings.source == "demo"
