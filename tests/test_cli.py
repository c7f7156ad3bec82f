"""The `localai` command as a newcomer runs it."""

import http.cookiejar
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings

from accounts.models import InstanceSettings, MfaRequirement
from localai_site.cli import deploy_warnings, reachable_from_other_machines
from tests.servers import free_port
from tests.waiting import wait_until_started

LOCALAI = str(Path(sys.executable).parent / "localai")


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    return {**env, "LOCALAI_DATA_DIR": str(data_dir), **extra}


def test_serve_migrates_registers_the_bundled_model_and_answers(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [LOCALAI, "serve", "--port", str(port)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        first_line = server.stdout.readline().decode()
        assert f"http://127.0.0.1:{port}/" in first_line and "embedded" in first_line

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return response.status == 200

        wait_until_started(
            server, healthy, what="the server to answer /healthz", timeout=30, ignoring=(OSError,)
        )
    finally:
        server.terminate()
        server.wait(timeout=20)
    with sqlite3.connect(tmp_path / "localai.sqlite3") as db:
        models = db.execute("select slug, is_default, status from models_hub_localmodel").fetchall()
    assert models == [("smollm2-135m-instruct", 1, "ready")]
    assert (tmp_path / "secret_key").exists()


def test_serve_prints_the_setup_link_of_a_fresh_instance_and_only_it_opens_signup(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [LOCALAI, "serve", "--port", str(port)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        said = [server.stdout.readline().decode() for _ in range(2)]
        link = next(re.search(r"http://\S+\?setup=\S+", line) for line in said if "setup=" in line).group()

        def page(url: str) -> str:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()

        wait_until_started(server, lambda: bool(page(link)), what="the signup page", ignoring=(OSError,))
        assert 'name="email"' in page(link)
        plain = page(f"http://127.0.0.1:{port}/accounts/signup/")
        assert 'name="email"' not in plain and "localai createsuperuser" in plain
    finally:
        server.terminate()
        server.wait(timeout=20)
    token_file = tmp_path / "setup-token"
    assert link.endswith(token_file.read_text()) and token_file.stat().st_mode & 0o777 == 0o600


def test_worker_explains_that_embedded_mode_needs_no_worker(tmp_path):
    result = subprocess.run(
        [LOCALAI, "worker"], env=_env(tmp_path), capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "needs REDIS_URL" in result.stderr


def test_manage_commands_run_through_localai(tmp_path):
    result = subprocess.run(
        [LOCALAI, "check"], env=_env(tmp_path), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_a_bad_port_or_setting_is_named_without_a_traceback(tmp_path):
    for variable, value, said in [
        ("LOCALAI_PORT", "80000", "LOCALAI_PORT=80000 is above the maximum of 65535"),
        ("LOCALAI_PORT", "http", "LOCALAI_PORT='http' is not a whole number"),
        ("TIME_ZONE", "Mars/Olympus", "TIME_ZONE='Mars/Olympus' is not a time zone name"),
    ]:
        result = subprocess.run(
            [LOCALAI, "serve"], env=_env(tmp_path, **{variable: value}), capture_output=True, text=True
        )
        assert result.returncode != 0
        assert said in result.stderr
        assert "Traceback" not in result.stderr


def test_serve_counts_signups_by_the_real_peer_whatever_address_it_forwards(tmp_path):
    port = free_port()
    signup = f"http://127.0.0.1:{port}/accounts/signup/"
    cookies = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    server = subprocess.Popen(
        [LOCALAI, "serve", "--port", str(port)],
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def page_opens() -> bool:
        # By the setup link (a fresh instance shows its form to nobody else); this also sets
        # the CSRF cookie, and the session keeps the token for the posts.
        setup = (tmp_path / "setup-token").read_text()
        with browser.open(f"{signup}?setup={setup}", timeout=5) as response:
            return response.status == 200

    try:
        wait_until_started(server, page_opens, what="the signup page", ignoring=(OSError,))
        csrf = next(cookie.value for cookie in cookies if cookie.name == "csrftoken")

        def post_from(forwarded_for: str) -> int:
            headers = {"X-CSRFToken": csrf, "X-Forwarded-For": forwarded_for}
            try:
                with browser.open(urllib.request.Request(signup, b"", headers), timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as refused:
                return refused.code

        # allauth allows 20 signup attempts a minute per address; each claims a new one.
        statuses = [post_from(f"198.51.100.{n}") for n in range(21)]
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert statuses == [200] * 20 + [429]


@pytest.mark.parametrize(
    ("host", "reachable"),
    [
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("::1", False),
        ("[::1]", False),
        ("localhost", False),
        ("0.0.0.0", True),
        ("::", True),
        ("192.168.1.20", True),
        ("chat.example.org", True),
    ],
)
def test_serve_knows_which_addresses_other_machines_reach(host, reachable):
    assert reachable_from_other_machines(host) is reachable


CONSOLE_MAIL = "django.core.mail.backends.console.EmailBackend"
EXPOSED = {
    "DEBUG": True,
    "SECRET_KEY": "change-me",
    "SESSION_COOKIE_SECURE": False,
    "CSRF_COOKIE_SECURE": False,
    "SECURE_HSTS_SECONDS": 0,
    "SECURE_SSL_REDIRECT": False,
    "EMAIL_BACKEND": CONSOLE_MAIL,
    "ACCOUNT_EMAIL_VERIFICATION": "optional",
}
SAFE = {
    "DEBUG": False,
    "SECRET_KEY": "k" + secrets.token_urlsafe(50),
    "SESSION_COOKIE_SECURE": True,
    "CSRF_COOKIE_SECURE": True,
    "SECURE_HSTS_SECONDS": 31_536_000,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": True,
    "SECURE_SSL_REDIRECT": True,
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "ACCOUNT_EMAIL_VERIFICATION": "mandatory",
}
EXPOSED_WARNINGS = {
    "localai.W001": "SECURE_COOKIES=1",
    "localai.W002": "EMAIL_HOST",
    "localai.W003": "ACCOUNT_EMAIL_VERIFICATION=mandatory",
    "localai.W004": "second factor",
    "security.W004": "SECURE_HSTS_SECONDS",
    "security.W008": "SECURE_SSL_REDIRECT",
    "security.W009": "SECRET_KEY",
    "security.W018": "DEBUG",
}


@pytest.mark.django_db  # whether staff need a second factor is an instance setting
def test_check_deploy_names_what_is_unsafe_and_the_variable_that_fixes_it():
    with override_settings(**EXPOSED):
        warnings = deploy_warnings()
        listed = StringIO()
        call_command("check", "--deploy", stderr=listed)
    assert sorted(warning.id for warning in warnings) == sorted(EXPOSED_WARNINGS)
    for warning in warnings:
        assert EXPOSED_WARNINGS[warning.id] in f"{warning.msg} {warning.hint}", warning.id
        assert warning.id in listed.getvalue()


@pytest.mark.django_db
def test_a_configuration_fit_to_be_exposed_gets_no_deploy_warning():
    InstanceSettings.objects.create(mfa_required=MfaRequirement.STAFF)
    with override_settings(**SAFE):
        assert deploy_warnings() == []


def test_serve_on_every_address_warns_of_what_is_unsafe_before_it_runs(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [LOCALAI, "serve", "--host", "0.0.0.0", "--port", str(port)],
        env=_env(tmp_path, SECURE_COOKIES="0", EMAIL_HOST="", ACCOUNT_EMAIL_VERIFICATION="none"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in server.stdout:
            lines.append(line)
            if "LocalAI is running" in line:
                break
    finally:
        server.terminate()
        server.wait(timeout=20)
    said = "".join(lines)
    assert "0.0.0.0 is reachable from other machines, and this instance is not set up for that" in said
    for variable in ("SECURE_COOKIES=1", "SECURE_HSTS_SECONDS", "EMAIL_HOST", "ACCOUNT_EMAIL_VERIFICATION"):
        assert variable in said
    assert said.index("localai.W001") < said.index("LocalAI is running")
