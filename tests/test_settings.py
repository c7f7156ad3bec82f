import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import ImproperlyConfigured

from localai_site.core.env import (
    env_bool,
    env_choice,
    env_int,
    env_networks,
    env_str,
    env_url,
    env_url_path,
)


def test_env_bool_reads_common_spellings(monkeypatch):
    monkeypatch.setenv("FLAG", "yes")
    assert env_bool("FLAG") is True
    monkeypatch.setenv("FLAG", "0")
    assert env_bool("FLAG", True) is False
    monkeypatch.delenv("FLAG")
    assert env_bool("FLAG", True) is True


def test_env_bool_rejects_anything_else_naming_the_variable(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG='maybe' is not a boolean"):
        env_bool("DEBUG")


def test_env_int_checks_type_and_range(monkeypatch):
    monkeypatch.setenv("N", "twelve")
    with pytest.raises(ImproperlyConfigured, match="N='twelve' is not a whole number"):
        env_int("N", 1)
    monkeypatch.setenv("N", "0")
    with pytest.raises(ImproperlyConfigured, match="below the minimum of 1"):
        env_int("N", 5, minimum=1)
    monkeypatch.setenv("N", "7")
    assert env_int("N", 5, minimum=1) == 7


def test_env_choice_lists_the_allowed_values(monkeypatch):
    monkeypatch.setenv("SIGNUP_MODE", "sometimes")
    with pytest.raises(ImproperlyConfigured, match="open, invite, closed"):
        env_choice("SIGNUP_MODE", "open", ("open", "invite", "closed"))


def test_secret_can_come_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("SECRET_KEY_FILE", str(secret))
    assert env_str("SECRET_KEY") == "s3cret"


SETTINGS_SHOWN = (
    "from django.conf import settings; print(settings.DEBUG, settings.SCALED, "
    "settings.DATABASES['default']['ENGINE'], settings.CHANNEL_LAYERS['default']['BACKEND'])"
)


def _settings_in_subprocess(tmp_path, code=SETTINGS_SHOWN, **env):
    return subprocess.run(
        [sys.executable, "-c", code],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "localai_site.settings",
            "LOCALAI_DATA_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )


def test_embedded_defaults_need_nothing_but_a_data_folder(tmp_path):
    env = {k: "" for k in ("REDIS_URL", "DATABASE_URL", "DEBUG")}
    result = _settings_in_subprocess(tmp_path, **env)
    assert result.stdout.split() == [
        "False",
        "False",
        "django.db.backends.sqlite3",
        "channels.layers.InMemoryChannelLayer",
    ], result.stderr
    key_file = tmp_path / "secret_key"
    first_key = key_file.read_text()
    assert len(first_key) >= 50
    _settings_in_subprocess(tmp_path, **env)
    assert key_file.read_text() == first_key, "the secret key must be made once and kept"


def test_redis_and_database_urls_switch_to_scaled_mode(tmp_path):
    result = _settings_in_subprocess(
        tmp_path, REDIS_URL="redis://127.0.0.1:6379/9", DATABASE_URL="postgres://u@127.0.0.1:5432/x"
    )
    assert result.stdout.split()[1:] == [
        "True",
        "django.db.backends.postgresql",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
    ], result.stderr


def test_a_bad_value_stops_start_up_with_a_clear_message(tmp_path):
    result = _settings_in_subprocess(tmp_path, CHAT_MAX_TOKENS="lots")
    assert result.returncode != 0
    assert "CHAT_MAX_TOKENS='lots' is not a whole number" in result.stderr


def test_a_sign_in_provider_is_installed_and_routed_once_its_credentials_are_set(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings; from django.urls import reverse; "
        "print([app for app in settings.INSTALLED_APPS if '.providers.' in app], reverse('google_login'))"
    )
    result = _settings_in_subprocess(
        tmp_path, code, APPLE_CLIENT_ID="", GOOGLE_CLIENT_ID="id", GOOGLE_CLIENT_SECRET="s"
    )
    installed, route = result.stdout.split() or ["", ""]
    assert installed == "['allauth.socialaccount.providers.google']", result.stderr
    assert route == "/accounts/google/login/"
    result = _settings_in_subprocess(tmp_path, code, APPLE_CLIENT_ID="", GOOGLE_CLIENT_ID="")
    assert "NoReverseMatch" in result.stderr


def test_sign_in_forms_may_go_on_to_the_configured_provider_only(tmp_path):
    """The sign-in form posts here and is redirected to the provider: Chromium blocks that
    redirect unless the Content-Security-Policy's form-action allows the provider."""
    code = (
        "import django; django.setup(); from django.test import Client; "
        "print(Client().get('/no-such-page/').headers['Content-Security-Policy'])"
    )

    def form_action(**env) -> str:
        result = _settings_in_subprocess(tmp_path, code, APPLE_CLIENT_ID="", **env)
        directives = dict(part.strip().split(" ", 1) for part in result.stdout.strip().split(";") if part)
        return directives.get("form-action", result.stderr)

    with_google = form_action(GOOGLE_CLIENT_ID="id", GOOGLE_CLIENT_SECRET="s")
    assert with_google == "'self' https://accounts.google.com"
    assert form_action(GOOGLE_CLIENT_ID="") == "'self'"


def test_env_url_wants_http_and_drops_the_trailing_slash(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example.org/")
    assert env_url("HF_ENDPOINT", "https://huggingface.co") == "https://hf-mirror.example.org"
    monkeypatch.setenv("HF_ENDPOINT", "hf-mirror.example.org")
    with pytest.raises(ImproperlyConfigured, match="HF_ENDPOINT='hf-mirror.example.org' must be an http"):
        env_url("HF_ENDPOINT", "https://huggingface.co")


@pytest.mark.parametrize(
    ("written", "read"),
    [("/ai", "/ai"), ("/ai/", "/ai"), ("/team/chat-1/", "/team/chat-1"), ("/", ""), ("", "")],
)
def test_env_url_path_reads_a_prefix_without_its_trailing_slash(monkeypatch, written, read):
    monkeypatch.setenv("LOCALAI_URL_PATH", written)
    assert env_url_path("LOCALAI_URL_PATH") == read


@pytest.mark.parametrize("written", ["ai", "https://example.org/ai", "/ai//x", "/a b", "/../x", "/ai?x=1"])
def test_env_url_path_refuses_anything_but_a_path(monkeypatch, written):
    monkeypatch.setenv("LOCALAI_URL_PATH", written)
    with pytest.raises(ImproperlyConfigured, match="LOCALAI_URL_PATH=.* must be a path such as /ai"):
        env_url_path("LOCALAI_URL_PATH")


def test_every_number_has_a_range(monkeypatch, tmp_path):
    result = _settings_in_subprocess(tmp_path, CHAT_TEMPERATURE="7")
    assert "CHAT_TEMPERATURE=7.0 is above the maximum of 2" in result.stderr
    result = _settings_in_subprocess(tmp_path, LOG_LEVEL="chatty")
    assert "LOG_LEVEL='chatty' must be one of: debug, info, warning, error, critical" in result.stderr


def test_env_networks_reads_addresses_and_networks_and_names_a_bad_one(monkeypatch):
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.5, 172.16.0.0/12,::1")
    assert [str(network) for network in env_networks("TRUSTED_PROXIES", [])] == [
        "10.0.0.5/32",
        "172.16.0.0/12",
        "::1/128",
    ]
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.5,proxy")
    with pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXIES: 'proxy' is not an IP address"):
        env_networks("TRUSTED_PROXIES", [])


def _compose() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parent.parent / "docker-compose.yml").read_text())


def test_compose_redis_wants_the_password_the_app_containers_are_given():
    compose = _compose()
    redis_command = compose["services"]["redis"]["command"]
    password = redis_command[redis_command.index("--requirepass") + 1]
    assert password.startswith("${REDIS_PASSWORD:?")  # compose refuses to start without one
    assert compose["x-app-env"]["REDIS_URL"] == f"redis://:{password}@redis:6379/0"


def test_compose_trusts_forwarded_headers_only_from_the_network_of_the_proxy_and_web():
    compose = _compose()
    services = compose["services"]
    on_edge = sorted(name for name, service in services.items() if "edge" in service.get("networks", ()))
    assert on_edge == ["proxy", "web"]
    assert [name for name, service in services.items() if service.get("ports")] == ["proxy"]
    edge_subnet = compose["networks"]["edge"]["ipam"]["config"][0]["subnet"]
    assert compose["x-app-env"]["TRUSTED_PROXIES"] == edge_subnet
