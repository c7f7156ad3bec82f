"""Backup and restore in scaled mode: PostgreSQL through pg_dump while a worker streams a
reply, a restore refused while the worker runs, and one that keeps the erased away."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from accounts.backups import backup_create
from accounts.models import User
from chat.models import Conversation, Message, MessageStatus, Upload
from chat.services import message_send, upload_save
from localai_site.core.privacy import user_erase
from tests.accounts.test_backups import restore_in_place
from tests.files import uploaded
from tests.scaled.conftest import WorkerProcess
from tests.waiting import wait_until

pytestmark = [pytest.mark.scaled, pytest.mark.postgres]


def test_a_postgres_backup_taken_mid_stream_restores_without_the_people_erased_since(
    worker, user, other_user, conversation, make_conversation, tmp_path
):
    bobs = upload_save(owner=other_user, conversation=None, file=uploaded("bob.txt", b"Bob's garden plan"))
    _, streaming = message_send(conversation=conversation, content="Tell me a long story about the sea.")
    wait_until(
        lambda: (m := Message.objects.get(pk=streaming.pk)).status == MessageStatus.STREAMING and m.content,
        what="the worker to stream the reply",
        timeout=120,
    )
    archive = tmp_path / "backup.tar.gz"
    manifest = backup_create(destination=archive)
    assert manifest["database"]["engine"] == "postgresql"
    user_erase(user=other_user)

    running = restore_in_place(archive, "--force")
    assert running.returncode != 0 and "LocalAI is running" in running.stderr
    assert Message.objects.filter(pk=streaming.pk).exists()
    worker.stop()
    restored = restore_in_place(archive, "--force")

    assert restored.returncode == 0, restored.stderr
    assert not User.objects.filter(email=other_user.email).exists()
    assert not Upload.objects.filter(pk=bobs.pk).exists()
    assert not (Path(settings.MEDIA_ROOT) / bobs.file.name).exists()
    assert Conversation.objects.filter(pk=conversation.pk, owner__email=user.email).exists()
    assert Message.objects.get(pk=streaming.pk).content, "the text written by the backup is there"

    again = WorkerProcess(tmp_path / "worker-after.log", CHAT_MAX_TOKENS="16")
    try:
        _, reply = message_send(conversation=make_conversation(User.objects.get(pk=user.pk)), content="Hi")
        wait_until(
            lambda: Message.objects.get(pk=reply.pk).status == MessageStatus.DONE,
            what="a reply on the restored instance",
            timeout=120,
        )
    finally:
        again.stop()
