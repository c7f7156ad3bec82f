"""`localai backup` and `localai restore`, as an operator runs them: a backup taken while a
reply streams restores to a working instance; a restore never brings an erased person back;
a damaged archive or an instance with data is refused, with nothing changed."""

from __future__ import annotations

import http.cookiejar
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections

from accounts.api_keys import api_key_create
from accounts.backups import backup_create
from accounts.erasures import erasure_subject
from accounts.models import ErasureRecord, User
from chat.models import Conversation, Message, MessageStatus, Upload
from chat.services import message_send, reply_stop, upload_save
from localai_site.core.privacy import user_erase
from tests.conftest import PASSWORD
from tests.files import uploaded
from tests.scaled.conftest import child_database_url
from tests.servers import free_port
from tests.waiting import wait_until, wait_until_started

LOCALAI = str(Path(sys.executable).parent / "localai")
NOTES = b"Tide tables for the week: high water at 06:12, low at 12:25."


def localai(*args: str, data_dir: Path, database_url: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["LOCALAI_DATA_DIR"] = str(data_dir)
    if database_url:
        env["DATABASE_URL"] = database_url
        if settings.SCALED:
            env["REDIS_URL"] = settings.REDIS_URL
    return subprocess.run([LOCALAI, *args], env=env, capture_output=True, text=True, timeout=300)


def restore_in_place(archive: Path, *flags: str) -> subprocess.CompletedProcess:
    """Restore into this test's own instance (its database and data folder)."""
    connections.close_all()
    return localai(
        "restore", str(archive), *flags, data_dir=settings.DATA_DIR, database_url=child_database_url()
    )


def reply_done(reply: Message) -> Message:
    return wait_until(
        lambda: (m := Message.objects.get(pk=reply.pk)).status == MessageStatus.DONE and m,
        what="the reply to be written",
        timeout=120,
    )


class Visitor:
    """Someone with a browser's cookies, over HTTP to a `localai serve` process."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path: str) -> bytes:
        with self.opener.open(self.base + path, timeout=30) as response:
            return response.read()

    def sign_in(self, email: str, password: str) -> None:
        self.get("/accounts/login/")
        csrf = next(cookie.value for cookie in self.cookies if cookie.name == "csrftoken")
        form = urllib.parse.urlencode({"login": email, "password": password, "csrfmiddlewaretoken": csrf})
        request = urllib.request.Request(
            self.base + "/accounts/login/", form.encode(), {"Referer": self.base + "/accounts/login/"}
        )
        with self.opener.open(request, timeout=30):
            pass
        assert any(cookie.name == "sessionid" for cookie in self.cookies), "not signed in"


@contextmanager
def serving(data_dir: Path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    log_path = data_dir.parent / f"serve-{port}.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [LOCALAI, "serve", "--port", str(port)],
            env={**env, "LOCALAI_DATA_DIR": str(data_dir), "CHAT_MAX_TOKENS": "16"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_started(
                server,
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200,
                what="the restored instance to answer",
                ignoring=(OSError,),
                log=log_path,
            )
            yield port
        finally:
            server.terminate()
            server.wait(timeout=30)


def test_a_backup_taken_while_a_reply_streams_restores_to_a_working_instance(
    transactional_db, user, conversation, settings, tmp_path
):
    settings.CHAT_MAX_TOKENS = 24
    notes = upload_save(owner=user, conversation=None, file=uploaded("tides.txt", NOTES, "text/plain"))
    _, first = message_send(conversation=conversation, content="Hello there", upload_ids=[notes.pk])
    first = reply_done(first)
    key = api_key_create(user=user, name="my editor")
    settings.CHAT_MAX_TOKENS = 600
    settings.CHAT_SAVE_INTERVAL_S = 0.1
    _, long_reply = message_send(
        conversation=conversation, content="Tell me a very long story about the sea."
    )
    saved_before = wait_until(
        lambda: (m := Message.objects.get(pk=long_reply.pk)).status == MessageStatus.STREAMING and m.content,
        what="the reply to be streaming",
        timeout=120,
    )

    archive = tmp_path / "backup.tar.gz"
    manifest = backup_create(destination=archive, with_secret_key=True)
    assert Message.objects.get(pk=long_reply.pk).status == MessageStatus.STREAMING, "backed up mid-stream"
    reply_stop(conversation=conversation, message_id=long_reply.pk)  # the rest of it is not needed
    assert archive.stat().st_mode & 0o777 == 0o600
    assert manifest["database"]["engine"] == "sqlite" and "accounts.0001_initial" in manifest["migrations"]
    assert f"media/{notes.file.name}" in manifest["files"]

    fresh = tmp_path / "fresh"
    restored = localai("restore", str(archive), data_dir=fresh)
    assert restored.returncode == 0, restored.stderr
    assert "Restored the backup of" in restored.stdout
    assert (fresh / "media" / notes.file.name).read_bytes() == NOTES

    with serving(fresh) as port:
        ann = Visitor(port)
        ann.sign_in(user.email, PASSWORD)
        page = ann.get(f"/c/{conversation.pk}/").decode()
        assert "Hello there" in page and "tides.txt" in page
        assert ann.get(f"/files/{notes.pk}/") == NOTES
        ask = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json.dumps(
                {"model": "local:smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}]}
            ).encode(),
            {"Authorization": f"Bearer {key.secret}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(ask, timeout=180) as response:
            answer = json.loads(response.read())
        assert answer["choices"][0]["message"]["content"].strip(), "a new reply is written"
    with sqlite3.connect(fresh / "localai.sqlite3") as db:
        status, content = db.execute(
            "select status, content from chat_message where id = ?", [long_reply.pk]
        ).fetchone()
    # The reply being written at the backup: failed on start, with the text it had by then.
    assert status == MessageStatus.FAILED and content.startswith(saved_before)


@pytest.fixture
def ann_and_bob(transactional_db, user, other_user):
    """Ann and Bob, each with a file of their own."""
    anns = upload_save(owner=user, conversation=None, file=uploaded("ann.txt", b"Ann's shopping list"))
    bobs = upload_save(owner=other_user, conversation=None, file=uploaded("bob.txt", b"Bob's garden plan"))
    return anns, bobs


@pytest.mark.postgres
def test_a_person_erased_after_the_backup_stays_erased_after_a_restore(ann_and_bob, user, tmp_path):
    anns, bobs = ann_and_bob
    Conversation.objects.create(owner=user, title="Ann's plans")
    archive = tmp_path / "backup.tar.gz"
    backup_create(destination=archive)
    pseudonym = erasure_subject(user)
    user_erase(user=user)
    ann_file = Path(settings.MEDIA_ROOT) / anns.file.name
    assert not ann_file.exists()

    restored = restore_in_place(archive, "--force")

    assert restored.returncode == 0, restored.stderr
    assert "erased again (erased since the backup): 1" in restored.stdout
    assert not User.objects.filter(email=user.email).exists()
    assert not Conversation.objects.filter(title="Ann's plans").exists()
    assert not Upload.objects.filter(pk=anns.pk).exists() and not ann_file.exists()
    assert (Path(settings.MEDIA_ROOT) / bobs.file.name).read_bytes() == b"Bob's garden plan"
    assert ErasureRecord.objects.filter(subject=pseudonym).exists()
    log = (Path(settings.DATA_DIR) / "erasures.jsonl").read_text()
    assert pseudonym in log and user.email not in log and "ann" not in log.lower()


@pytest.mark.postgres
def test_a_damaged_archive_is_refused_and_nothing_changes(ann_and_bob, make_user, tmp_path):
    _, bobs = ann_and_bob
    archive = tmp_path / "backup.tar.gz"
    manifest = backup_create(destination=archive)
    carol = make_user("carol@example.com")  # after the backup
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(tampered, "w:gz") as target:
        for member in source:
            data = source.extractfile(member).read()
            if member.name == f"media/{bobs.file.name}":
                data = b"Bob's garden plan, changed"
                member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    assert f"media/{bobs.file.name}" in manifest["files"]

    for damaged, said in [
        (cut, "is not a complete LocalAI backup"),
        (tampered, f"the checksum of media/{bobs.file.name} does not match"),
        (tmp_path / "nowhere.tar.gz", "There is no file"),
    ]:
        refused = restore_in_place(damaged, "--force")
        assert refused.returncode != 0
        assert said in refused.stderr and "Traceback" not in refused.stderr
        assert User.objects.filter(pk=carol.pk).exists(), "the database was not touched"
        assert (Path(settings.MEDIA_ROOT) / bobs.file.name).read_bytes() == b"Bob's garden plan"
    assert "Nothing was changed" in restore_in_place(cut, "--force").stderr
    assert not list(Path(settings.DATA_DIR).glob(".restore-*")), "nothing left behind"


@pytest.mark.postgres
def test_a_restore_into_an_instance_with_data_needs_force(ann_and_bob, make_user, tmp_path):
    archive = tmp_path / "backup.tar.gz"
    backup_create(destination=archive)
    carol = make_user("carol@example.com")  # after the backup

    refused = restore_in_place(archive)
    assert refused.returncode != 0 and "already has data" in refused.stderr and "--force" in refused.stderr
    assert User.objects.filter(pk=carol.pk).exists()

    assert restore_in_place(archive, "--force").returncode == 0
    assert not User.objects.filter(pk=carol.pk).exists(), "the instance is the backup's again"
    assert User.objects.filter(pk=ann_and_bob[1].owner_id).exists()


def test_the_image_has_the_pg_dump_of_the_postgresql_compose_runs():
    root = Path(__file__).resolve().parents[2]
    client = re.search(r"^ARG POSTGRES_CLIENT_MAJOR=(\d+)$", (root / "Dockerfile").read_text(), re.MULTILINE)
    server = re.search(r"^\s+image: postgres:(\d+)", (root / "docker-compose.yml").read_text(), re.MULTILINE)
    assert client and server and client.group(1) == server.group(1), "pg_dump refuses another major version"
