"""The personal-data registry, and the engine that walks it for exports and erasure.

Every app declares, in its own ``privacy.py``, which of its models hold personal data, how
each is exported and how each is erased (``register``); what else a person's export and
their Settings → Privacy page show comes from the apps too (``register_section``,
``register_panel``). Export and erasure walk this registry, so a model that is not
registered is neither exported nor erased; a test fails when a model linked to a user is
missing here.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth import SESSION_KEY
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models import Q
from django.db.models.fields.files import FieldFile
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules

from .files import files_delete_after_commit

EXPORT_SCHEMA_VERSION = 1


class Erase(enum.StrEnum):
    DELETE = "delete"
    UNLINK = "unlink"  # the row is someone else's; only its link to the person goes
    PSEUDONYMISE = "pseudonymise"  # records the law makes us keep: kept, not identifying


@dataclass(frozen=True)
class PersonalData:
    model: type[models.Model]
    owner: str  # lookup from the model to the user; "" for the user row itself
    purpose: str
    category: str | None  # the export's file for it; None: not exported (secrets, internals)
    fields: tuple[str, ...] = ()
    erase: Erase = Erase.DELETE
    files: tuple[str, ...] = ()  # file fields: exported as files, deleted on erasure
    # For PSEUDONYMISE: the values that replace identifying ones; a callable gets the user.
    pseudonymise: Mapping[str, object | Callable] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.model._meta.label

    def pseudonyms_for(self, user) -> dict[str, object]:
        return {name: value(user) if callable(value) else value for name, value in self.pseudonymise.items()}

    def rows_of(self, user) -> models.QuerySet:
        return self.model._default_manager.filter(**{self.owner or "pk": user.pk})

    def files_of(self, user) -> list[FieldFile]:
        rows = self.rows_of(user)
        return [
            getattr(obj, name) for name in self.files for obj in rows.exclude(**{name: ""}).only("pk", name)
        ]


@dataclass(frozen=True)
class ExportPage:
    """A page of an export that a person reads in a browser, offline: ``path`` inside the
    archive (its links to the archive's files are relative to it), listed on the index."""

    path: str
    title: str
    html: str
    summary: str = ""


@dataclass(frozen=True)
class PrivacyPanel:
    """A card an app adds to a person's Settings → Privacy page: its template gets
    ``panel``, what ``context`` answers for the signed-in person."""

    template: str
    context: Callable[[Any], dict]


_entries: list[PersonalData] = []
_sections: dict[str, Callable[[Any], object]] = {}
_panels: list[PrivacyPanel] = []
_pages: dict[str, Callable[[Any], Iterator[ExportPage]]] = {}
_before_erase: list[Callable[[Any], None]] = []
_on_erase: list[Callable[[Any], None]] = []


def register(*entries: PersonalData) -> None:
    _entries.extend(entries)


def register_section(name: str, describe: Callable[[Any], object]) -> None:
    """A part of every export's manifest (and of its readable index), e.g. who received
    the person's words; ``describe`` gets the person and answers JSON-ready data."""
    _sections[name] = describe


def register_panel(panel: PrivacyPanel) -> None:
    _panels.append(panel)


def register_pages(heading: str, pages: Callable[[Any], Iterator[ExportPage]]) -> None:
    """Readable pages of every export, under ``heading`` on its index (e.g. a page per
    conversation); ``pages`` gets the person and yields them one at a time."""
    _pages[heading] = pages


def register_before_erase(step: Callable[[Any], None]) -> None:
    """What an app must do elsewhere before a person is erased (their payment provider's
    customer deleted): ``step`` gets the person, before the write transaction, since it waits
    on the network; a ``Refusal`` from it stops the erasure with nothing erased."""
    _before_erase.append(step)


def register_on_erase(step: Callable[[Any], None]) -> None:
    """What must happen in the erasure's own transaction (recording that it happened):
    ``step`` gets the person while their row still exists."""
    _on_erase.append(step)


@cache
def _discovered() -> None:
    autodiscover_modules("privacy")


def registry() -> tuple[PersonalData, ...]:
    _discovered()
    return tuple(_entries)


def sections_for(user) -> dict[str, object]:
    _discovered()
    return {name: describe(user) for name, describe in _sections.items()}


def panels_for(user) -> list[tuple[str, dict]]:
    """(template, its ``panel`` context) of every app's card, in the order apps registered them."""
    _discovered()
    return [(panel.template, panel.context(user)) for panel in _panels]


def pseudonym(user) -> str:
    """A stable reference to a person that does not say who they are."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"subject:{user.pk}".encode(), hashlib.sha256)
    return digest.hexdigest()[:16]


# --- Export -----------------------------------------------------------------------------


def _json_rows(rows: models.QuerySet, fields: tuple[str, ...]) -> Iterator[bytes]:
    """One JSON array, produced row by row: an export never holds a whole table in memory."""
    yield b"["
    for index, row in enumerate(rows.order_by("pk").values(*fields).iterator(chunk_size=500)):
        yield (b",\n" if index else b"\n") + json.dumps(
            row, cls=DjangoJSONEncoder, ensure_ascii=False
        ).encode()
    yield b"\n]\n"


def user_export(*, user, destination: Path, progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Everything the instance keeps about ``user``, as a ZIP at ``destination``: one JSON
    file per category, the original files, a manifest and a readable index.html.
    Returns the number of records per category; ``progress`` hears the percentage done."""
    counts: dict[str, int] = {}
    categories = []
    exported = [(entry, entry.category) for entry in registry() if entry.category is not None]
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for done, (entry, category) in enumerate(exported):
            if progress:
                progress(round(100 * done / (len(exported) + 1)))
            rows = entry.rows_of(user)
            counts[category] = rows.count()
            with archive.open(f"{category}.json", "w") as handle:
                for chunk in _json_rows(rows, entry.fields):
                    handle.write(chunk)
            for stored in entry.files_of(user):
                with stored.open("rb") as source, archive.open(f"files/{stored.name}", "w") as target:
                    shutil.copyfileobj(source, target, 1024 * 1024)
            categories.append({"name": category, "file": f"{category}.json", "purpose": entry.purpose})
        readable = {heading: _pages_write(archive, pages(user)) for heading, pages in _pages.items()}
        manifest = {
            "schema_version": EXPORT_SCHEMA_VERSION,
            "generated_at": timezone.now().isoformat(),
            "subject": user.email,
            "categories": [{**c, "records": counts[c["name"]]} for c in categories],
            **sections_for(user),
            "pages": readable,
            "sources": ["you, through this instance", "this instance, while it ran the models you chose"],
        }
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
        archive.writestr("index.html", render_to_string("privacy/export_index.html", {"manifest": manifest}))
    return counts


def _pages_write(archive: zipfile.ZipFile, pages: Iterator[ExportPage]) -> list[dict[str, str]]:
    listed = []
    for page in pages:
        archive.writestr(page.path, page.html)
        listed.append({"title": page.title, "file": page.path, "summary": page.summary})
    return listed


# --- Erasure ----------------------------------------------------------------------------


def _session_keys_of(user) -> list[str]:
    """A session names its user only inside its signed data: every one must be decoded."""
    sessions = Session.objects.iterator(chunk_size=500)
    return [session.pk for session in sessions if session.get_decoded().get(SESSION_KEY) == str(user.pk)]


def admin_history_scrub(*, rows: models.QuerySet, object_repr: str) -> int:
    """Admin history about ``rows`` keeps who did what and when, but no longer quotes them:
    an entry names its object as it was (an email, a title) and outlives it. Call it while
    the rows still exist."""
    entries = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(rows.model))
    # The history is short and the rows may be many: look up only the objects it names
    # (in Python: object_id is text, a primary key is not, and PostgreSQL will not compare them).
    object_ids = list(entries.values_list("object_id", flat=True).distinct())
    named = rows.filter(pk__in=object_ids).values_list("pk", flat=True)
    return entries.filter(object_id__in=[str(pk) for pk in named]).update(
        object_repr=object_repr, change_message=""
    )


def user_erase(*, user) -> dict[str, int]:
    """Erase ``user`` as the registry says; returns a receipt of counts per model, no content."""
    # Decoding every session takes long on a busy instance: done before the write
    # transaction, which on SQLite holds the write lock (BEGIN IMMEDIATE) for everyone. A
    # sign-in in between leaves a session naming only an id that no longer exists.
    _discovered()
    for step in _before_erase:
        step(user)
    return _user_erase(user=user, session_keys=_session_keys_of(user))


@transaction.atomic
def _user_erase(*, user, session_keys: list[str]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    # Admin history about the person's rows, before they go (UNLINK rows are other people's).
    scrubbed = "admin.LogEntry (scrubbed)"
    for entry in registry():
        if entry.erase != Erase.UNLINK:
            about = f"{entry.model._meta.verbose_name} of an erased account"
            if not entry.owner:
                about = "erased account"  # the person's own row
            counts[scrubbed] += admin_history_scrub(rows=entry.rows_of(user), object_repr=about)
    # Entries about rows that are gone already (an invitation, a data request) still name them.
    counts[scrubbed] += LogEntry.objects.filter(
        Q(object_repr__icontains=user.email) | Q(change_message__icontains=user.email)
    ).update(object_repr="about an erased account", change_message="")
    # Every file first: deleting one model's rows can cascade to another's (a conversation
    # takes its uploads with it), and the rows name the files.
    files_delete_after_commit(
        stored for entry in registry() if entry.erase == Erase.DELETE for stored in entry.files_of(user)
    )
    for entry in registry():
        if not entry.owner:
            continue  # the person's own row goes last, below
        rows = entry.rows_of(user)
        if entry.erase == Erase.DELETE:
            counts.update(rows.delete()[1])
        elif entry.erase == Erase.UNLINK:
            counts[f"{entry.label} (unlinked)"] += rows.update(**{entry.owner: None})
        else:
            counts[f"{entry.label} (pseudonymised)"] += rows.update(**entry.pseudonyms_for(user))
    counts["sessions"] = Session.objects.filter(pk__in=session_keys).delete()[0]
    for step in _on_erase:
        step(user)
    counts.update(user.delete()[1])
    return {label: count for label, count in counts.items() if count}
