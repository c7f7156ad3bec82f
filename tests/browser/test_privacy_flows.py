"""Settings → Privacy as a person uses it: download my data, clear history, delete a file,
delete my account. Real Chromium against the real server; files on the real disk."""

from __future__ import annotations

import base64
import json
import os
import re
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import Dialog, expect

from accounts.models import User
from chat.models import Conversation, Message, Role, Upload
from chat.services import upload_save
from tests.conftest import PASSWORD
from tests.files import uploaded

from .base import BrowserTestCase, screenshot, sign_up

pytestmark = pytest.mark.browser


def _on_disk(upload: Upload) -> Path:
    return Path(settings.MEDIA_ROOT) / upload.file.name


class PrivacyFlowTests(BrowserTestCase):
    def _person_with_a_chat(self, email: str) -> tuple[User, Conversation]:
        sign_up(self.page, self.live_server_url, email)
        person = User.objects.get(email=email)
        conversation = Conversation.objects.create(owner=person, model="local:smollm2", title="Ferry plans")
        Message.objects.create(conversation=conversation, role=Role.USER, content="Book the ferry to Skye.")
        Message.objects.create(
            conversation=conversation, role=Role.ASSISTANT, content="The 9:40 sails daily."
        )
        return person, conversation

    def _open_privacy(self) -> None:
        self.page.goto(f"{self.live_server_url}/settings/privacy/")

    def _record_dialogs(self) -> list[str]:
        """Confirmation dialogs are answered as ``self.confirm`` says; returns what they asked."""
        asked: list[str] = []

        def answer(dialog: Dialog) -> None:
            asked.append(dialog.message)
            dialog.accept() if self.confirm else dialog.dismiss()

        self.confirm = True
        self.page.on("dialog", answer)
        return asked

    def test_a_person_downloads_their_data_watching_it_being_prepared(self):
        page = self.page
        person, conversation = self._person_with_a_chat("downloader@example.com")
        # Enough to take a moment to pack, so the progress is there to be seen.
        for index in range(12):
            upload_save(
                owner=person,
                conversation=conversation,
                file=uploaded(f"notes {index}.txt", base64.b64encode(os.urandom(3 * 512 * 1024))),  # 2 MB
            )
        self._open_privacy()
        page.get_by_role("button", name="Prepare a new download").click()
        expect(page.get_by_text("Your download is being prepared")).to_be_visible()
        expect(page.locator("#export progress")).to_be_visible()
        expect(page.locator("#export .export-state")).to_have_text(re.compile(r"^Preparing… \d+%$"))

        link = page.get_by_role("link", name=re.compile(r"^Download \(\d+(\.\d)? MB\)$"))
        expect(link).to_be_visible(timeout=60_000)  # the page reloads itself once it is ready
        with page.expect_download() as started:
            link.click()
        download = started.value
        assert download.suggested_filename == "localai-my-data.zip"
        with zipfile.ZipFile(download.path()) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            conversations = json.loads(archive.read("conversations.json"))
            messages = json.loads(archive.read("messages.json"))
            uploads = json.loads(archive.read("uploads.json"))
            first_notes = next(u for u in uploads if u["original_name"] == "notes 0.txt")
            assert (
                archive.read(f"files/{first_notes['file']}")
                == _on_disk(Upload.objects.get(pk=first_notes["id"])).read_bytes()
            )
            assert "index.html" in archive.namelist()
        assert manifest["subject"] == "downloader@example.com" and manifest["schema_version"] == 1
        assert [c["title"] for c in conversations] == ["Ferry plans"]
        assert [m["content"] for m in messages] == ["Book the ferry to Skye.", "The 9:40 sails daily."]
        assert len(uploads) == 12

    def test_clearing_local_history_removes_those_chats_and_their_files(self):
        page = self.page
        person, local = self._person_with_a_chat("clearer@example.com")
        cloud = Conversation.objects.create(
            owner=person, model="cloud:echo/x", provider="echo", title="Cloud chat"
        )
        local_file = upload_save(owner=person, conversation=local, file=uploaded("notes.txt"))
        cloud_file = upload_save(owner=person, conversation=cloud, file=uploaded("photo.png"))
        asked = self._record_dialogs()
        self._open_privacy()
        page.get_by_role("button", name="Delete all local-model history (1)").click()
        expect(page.get_by_text("Deleted 1 local-model conversation.")).to_be_visible()
        assert asked == ["Delete all 1 conversations with local models, and the files given in them?"]
        expect(page.get_by_role("button", name="Delete all local-model history (0)")).to_be_visible()
        files = page.locator("#files table")
        expect(files).to_contain_text("photo.png")
        expect(files).not_to_contain_text("notes.txt")
        assert list(Conversation.objects.filter(owner=person)) == [cloud]
        assert not _on_disk(local_file).exists() and _on_disk(cloud_file).exists()

    def test_a_person_downloads_then_deletes_one_file_after_confirming(self):
        page = self.page
        person, conversation = self._person_with_a_chat("tidy@example.com")
        report = upload_save(owner=person, conversation=conversation, file=uploaded("report.pdf"))
        upload_save(owner=person, conversation=None, file=uploaded("notes.txt"))
        self._open_privacy()
        rows = page.locator("#files tbody tr")
        expect(rows).to_have_count(2)
        row = rows.filter(has_text="report.pdf")
        expect(row).to_contain_text("Ferry plans")
        with page.expect_download() as started:
            row.get_by_role("link", name="report.pdf").click()
        assert Path(started.value.path()).read_bytes() == _on_disk(report).read_bytes()
        screenshot(page, "privacy-page", full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing runs off the side
        screenshot(page, "privacy-page-phone", full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.set_viewport_size({"width": 1280, "height": 800})

        asked = self._record_dialogs()
        self.confirm = False
        row.get_by_role("button", name="Delete report.pdf").click()
        expect(rows).to_have_count(2)  # said no: nothing happened
        assert asked == ["Delete “report.pdf”? It cannot be undone."] and _on_disk(report).exists()

        self.confirm = True
        row.get_by_role("button", name="Delete report.pdf").click()
        expect(page.get_by_text("Deleted “report.pdf”.")).to_be_visible()
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("notes.txt")
        assert not _on_disk(report).exists()
        assert list(Upload.objects.filter(owner=person).values_list("original_name", flat=True)) == [
            "notes.txt"
        ]

    def test_deleting_ones_account_signs_out_for_good_and_leaves_no_rows(self):
        page = self.page
        person, conversation = self._person_with_a_chat("leaver@example.com")
        upload = upload_save(owner=person, conversation=None, file=uploaded("photo.jpg"))
        self._open_privacy()
        page.get_by_role("link", name="Delete my account…").click()
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_label("Type DELETE to confirm").fill("delete")
        page.get_by_role("button", name="Erase my account").click()
        expect(page.get_by_text("Type DELETE in capitals to confirm.")).to_be_visible()
        assert User.objects.filter(pk=person.pk).exists()

        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_label("Type DELETE to confirm").fill("DELETE")
        page.get_by_role("button", name="Erase my account").click()
        page.wait_for_url(f"{self.live_server_url}/accounts/login/")
        expect(page.get_by_text("Your account and everything kept about you were erased.")).to_be_visible()

        page.goto(f"{self.live_server_url}/")
        page.wait_for_url(re.compile(r"/accounts/login/\?next=/$"))  # signed out
        page.fill("input[name=login]", "leaver@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action^='/accounts/login/'] button[type=submit]")
        expect(page.get_by_text("not correct")).to_be_visible()
        assert re.search(r"/accounts/login/", page.url)
        assert not User.objects.filter(email="leaver@example.com").exists()
        assert not Conversation.objects.filter(pk=conversation.pk).exists()
        assert not Message.objects.filter(conversation_id=conversation.pk).exists()
        assert not Upload.objects.exists() and not _on_disk(upload).exists()
