"""Settings from flags and WHISPERSEG_* variables: the gunicorn and CLI entry points."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend import create_app_from_env
from server.settings import ServerSettings, SettingsError


def test_defaults_suit_a_local_single_user_server():
    settings = ServerSettings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8050)
    assert settings.data_dir == Path(__file__).resolve().parents[2] / "data"
    assert settings.audio_memory_budget_mb == 2048 and settings.idle_timeout_hours == 48
    assert settings.max_spec_columns == 20_000
    assert settings.allow_private_urls is False and settings.auth_tokens_file is None


def set_environment(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def test_environment_variables(tmp_path, monkeypatch):
    env = {
        "WHISPERSEG_DATA_DIR": str(tmp_path),
        "WHISPERSEG_PORT": "9000",
        "WHISPERSEG_ALLOW_PRIVATE_URLS": "true",
        "WHISPERSEG_MAX_UPLOAD_MB": "12.5",
        "WHISPERSEG_AUTH_TOKENS_FILE": "/etc/tokens.txt",
        "UNRELATED": "x",
    }
    set_environment(monkeypatch, env)
    settings = ServerSettings.from_env()
    assert settings.data_dir == tmp_path and settings.port == 9000
    assert settings.allow_private_urls is True and settings.max_upload_mb == 12.5
    assert settings.auth_tokens_file == Path("/etc/tokens.txt")


def test_flags_override_environment(tmp_path, monkeypatch):
    set_environment(monkeypatch, {"WHISPERSEG_PORT": "9000", "WHISPERSEG_HOST": "0.0.0.0"})
    argv = ["--port", "9100", "--data-dir", str(tmp_path), "--allow-private-urls"]
    settings = ServerSettings.from_args(argv)
    assert settings.port == 9100 and settings.host == "0.0.0.0"
    assert settings.data_dir == tmp_path and settings.allow_private_urls is True
    budget = ServerSettings.from_args(["--audio-memory-budget-mb", "512"]).audio_memory_budget_mb
    assert budget == 512


def test_invalid_values_name_their_source(monkeypatch):
    monkeypatch.setenv("WHISPERSEG_PORT", "eighty")
    with pytest.raises(SettingsError, match="WHISPERSEG_PORT"):
        ServerSettings.from_env()
    monkeypatch.setenv("WHISPERSEG_PORT", "8050")
    monkeypatch.setenv("WHISPERSEG_ALLOW_PRIVATE_URLS", "maybe")
    with pytest.raises(SettingsError, match="WHISPERSEG_ALLOW_PRIVATE_URLS"):
        ServerSettings.from_env()
    with pytest.raises(SettingsError, match="--max-upload-mb"):
        ServerSettings.from_args(["--max-upload-mb", "lots"])


def test_help_lists_every_setting_as_a_flag(capsys):
    with pytest.raises(SystemExit):
        ServerSettings.from_args(["--help"])
    shown = capsys.readouterr().out
    for flag in ("--audio-memory-budget-mb", "--allow-private-urls", "--finetune-max-steps"):
        assert flag in shown


def test_gunicorn_factory_reads_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WHISPERSEG_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WHISPERSEG_MAX_UPLOAD_MB", "1")
    app = create_app_from_env()
    try:
        assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024
        assert (tmp_path / "state" / "annotations.sqlite3").exists()
        assert app.test_client().get("/get-status").json == {"response": "success"}
    finally:
        app.extensions["whisperseg"].close()


def test_a_broker_switches_on_the_distributed_mode(monkeypatch):
    assert ServerSettings().broker_url is None  # embedded: jobs in the server's threads
    monkeypatch.setenv("WHISPERSEG_BROKER_URL", "redis://10.0.0.5:6379/0")
    assert ServerSettings.from_env().broker_url == "redis://10.0.0.5:6379/0"
    for argv in (["--broker", "redis://a:6379/1"], ["--broker=redis://a:6379/1"]):
        assert ServerSettings.from_args(argv).broker_url == "redis://a:6379/1"
    assert ServerSettings.from_args(["--broker-url", "redis://b"]).broker_url == "redis://b"
