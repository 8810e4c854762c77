"""The application factory and settings."""
import pytest

import config
from backoffice import create_app


def test_create_app_twice_in_one_process(database_url, tmp_path):
    from tests.conftest import app_overrides

    first = create_app("testing", app_overrides(database_url, tmp_path))
    second = create_app("testing", app_overrides(database_url, tmp_path))
    assert first is not second
    for app in (first, second):
        client = app.test_client()
        assert client.get("/login").status_code == 200
        assert client.get("/admin/").status_code == 302
    assert first.extensions["celery"] is not second.extensions["celery"]


def test_production_refuses_to_start_without_a_secret_key(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="SECRET_KEY must be set"):
        config.load("production")


def test_production_refuses_a_short_secret_key(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "short")
    with pytest.raises(RuntimeError, match="too short"):
        config.load("production")


def test_production_starts_with_a_real_secret_key(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "x" * 48)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://backoffice.example.org/")
    monkeypatch.setenv("MAIL_URL", "smtp://backoffice:secret@smtp.example.org:587")
    monkeypatch.setenv("MAIL_FROM", "Provider verification <no-reply@example.org>")
    settings = config.load("production")
    assert settings["SESSION_COOKIE_SECURE"] is True


def test_every_setting_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("VERIFICATION_VALIDITY_DAYS", "180")
    monkeypatch.setenv("WTF_CSRF_ENABLED", "false")
    monkeypatch.setenv("DATABASE_URL", "postgres://someone@db.internal/backoffice")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/2")
    settings = config.load("testing")
    assert settings["VERIFICATION_VALIDITY_DAYS"] == 180
    assert settings["WTF_CSRF_ENABLED"] is False
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://someone@db.internal/backoffice"
    assert settings["REDIS_URL"] == "redis://cache.internal:6379/2"


def test_a_malformed_environment_setting_is_refused(monkeypatch):
    monkeypatch.setenv("VERIFICATION_VALIDITY_DAYS", "a year")
    with pytest.raises(ValueError):
        config.load("testing")


def test_unknown_environment_name_is_refused():
    with pytest.raises(RuntimeError, match="BACKOFFICE_ENV"):
        config.load("staging")


def test_embedded_default_uses_sqlite_and_a_serverless_broker(monkeypatch, tmp_path):
    for name in ("DATABASE_URL", "REDIS_URL", "SQLALCHEMY_DATABASE_URI"):
        monkeypatch.delenv(name, raising=False)
    settings = config.load("development")
    assert settings["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    from tasks.celery_app import broker_settings

    assert broker_settings({**settings, "BROKER_FOLDER": str(tmp_path)})["broker_url"] == "backoffice-filesystem://"


def test_responses_carry_security_headers(client):
    response = client.get("/login")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Request-ID"]
