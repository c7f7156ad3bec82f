"""Personal API keys: made in Settings and shown once, kept as a keyed hash, revoked by their
owner or an admin, exported and erased with the rest, and never written to logs or crash
reports. The API itself is tested against the live server in tests/chat/test_api.py."""

from __future__ import annotations

import json
import logging
import zipfile

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from accounts.api_keys import api_key_create, api_key_digest
from accounts.models import ApiKey, ApiKeyScope, CrashReport
from chat import api
from localai_site.core.privacy import user_erase, user_export

pytestmark = pytest.mark.django_db


def _make_key(client, **fields) -> str:
    """Make a key on the settings page; the key as the page shows it."""
    data = {"name": "my editor", "scope": ApiKeyScope.CHAT, "keep_history": "on", **fields}
    page = client.post(reverse("accounts:api_keys"), data)
    assert page.status_code == 200
    return page.context["created"].secret


def test_a_new_key_is_shown_once_and_only_its_hash_and_prefix_are_kept(client, user, tmp_path):
    client.force_login(user)
    page = client.post(
        reverse("accounts:api_keys"),
        {"name": "my editor", "scope": ApiKeyScope.MODELS, "local_only": "on", "expires_on": "2099-01-31"},
    )
    secret = page.context["created"].secret
    assert secret.startswith("lai_") and len(secret) > 40
    assert secret in page.content.decode() and page["Cache-Control"].startswith("max-age=0")

    later = client.get(reverse("accounts:api_keys")).content.decode()
    key = ApiKey.objects.get()
    assert secret not in later and f"{key.prefix}…" in later and "my editor" in later
    assert key.prefix == secret[:12] and key.digest == api_key_digest(secret) != secret
    assert (key.scope, key.local_only, key.keep_history) == (ApiKeyScope.MODELS, True, False)
    assert key.expires_at.date().isoformat() == "2099-01-31"
    dump = tmp_path / "dump.json"
    call_command("dumpdata", "accounts", output=str(dump))
    assert secret not in dump.read_text() and secret[12:] not in dump.read_text()


def test_a_person_revokes_their_own_keys_and_nobody_elses(client, user, other_user):
    theirs = api_key_create(user=other_user, name="bob's").key
    client.force_login(user)
    _make_key(client)
    mine = ApiKey.objects.get(user=user)
    assert client.post(reverse("accounts:api_key_revoke", args=[theirs.pk])).status_code == 404
    client.post(reverse("accounts:api_key_revoke", args=[mine.pk]))
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked_at is not None and theirs.revoked_at is None
    assert "revoked" in client.get(reverse("accounts:api_keys")).content.decode()


def test_admins_list_every_key_and_revoke_after_confirming(client, admin, user):
    made = api_key_create(user=user, name="ann's script")
    client.force_login(admin)
    listing = client.get(reverse("admin:accounts_apikey_changelist")).content.decode()
    assert "ann&#x27;s script" in listing and made.key.prefix in listing and made.secret not in listing
    data = {"action": "revoke", "_selected_action": [str(made.key.pk)]}
    asked = client.post(reverse("admin:accounts_apikey_changelist"), data)
    assert "Revoke these API keys?" in asked.content.decode()
    made.key.refresh_from_db()
    assert made.key.revoked_at is None
    client.post(reverse("admin:accounts_apikey_changelist"), {**data, "confirmed": "yes"})
    made.key.refresh_from_db()
    assert made.key.revoked_at is not None


def test_the_export_holds_the_keys_description_and_erasure_removes_them(user, other_user, tmp_path):
    made = api_key_create(user=user, name="laptop", local_only=True)
    api_key_create(user=other_user, name="bob's")
    user_export(user=user, destination=tmp_path / "export.zip")
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        exported = json.loads(archive.read("api_keys.json"))
        everything = b"".join(archive.read(name) for name in archive.namelist())
    assert [(k["name"], k["prefix"], k["local_only"]) for k in exported] == [
        ("laptop", made.key.prefix, True)
    ]
    assert made.key.digest.encode() not in everything and made.secret.encode() not in everything

    user_erase(user=user)
    assert list(ApiKey.objects.values_list("name", flat=True)) == ["bob's"]


def test_keys_never_reach_the_logs_or_the_crash_reports(user, caplog, monkeypatch):
    """What the API logs names no key; a failure whose text holds one (a library quoting
    its input) is stored scrubbed."""
    made = api_key_create(user=user, name="script")
    client = Client(raise_request_exception=False)
    caplog.set_level(logging.DEBUG)
    revoked = api_key_create(user=user, name="old")
    ApiKey.objects.filter(pk=revoked.key.pk).update(revoked_at="2026-01-01T00:00:00Z")
    for secret in (made.secret, revoked.secret, "lai_" + "x" * 43):
        client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert "/v1/models" in caplog.text  # the refusals were logged, without the keys
    for secret in (made.secret, revoked.secret, "x" * 43):
        assert secret not in caplog.text

    def failing(key):  # as a library might: naming what it was given
        raise RuntimeError(f"could not list models for Authorization: Bearer {made.secret} ({made.secret})")

    monkeypatch.setattr(api, "_models_for", failing)
    assert client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {made.secret}").status_code == 500

    report = CrashReport.objects.get()
    stored = " ".join([report.message, report.traceback, report.request_path])
    assert "RuntimeError" in report.exception_type and "<secret>" in report.message
    assert made.secret not in stored and made.secret[4:] not in stored
