from __future__ import annotations

import json
import shutil
import zipfile
from collections import Counter
from pathlib import Path

from django.contrib.admin.models import LogEntry
from django.contrib.auth import SESSION_KEY
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Count, Max, Min
from django.db.models.fields.files import FieldFile
from django.template.loader import render_to_string
from django.utils import timezone

from localai_site.privacy import Erase, PersonalData, registry

from .models import Invitation, User


@transaction.atomic
def user_signup_complete(*, user: User, invitation: Invitation | None) -> User:
    """Runs once per new account: the first account on an instance administers it."""
    is_first = not User.objects.exclude(pk=user.pk).exists()
    if is_first:
        user.is_staff = True
        user.is_superuser = True
        user.save(update_fields=["is_staff", "is_superuser"])
    if invitation is not None:
        invitation.accepted_by = user
        invitation.accepted_at = timezone.now()
        invitation.save(update_fields=["accepted_by", "accepted_at"])
    return user


# --- Data-subject rights: export and erasure, over the personal-data registry -----------

EXPORT_SCHEMA_VERSION = 1


def _json_rows(rows, fields: tuple[str, ...]):
    """One JSON array, produced row by row: an export never holds a whole table in memory."""
    yield b"["
    for index, row in enumerate(rows.order_by("pk").values(*fields).iterator(chunk_size=500)):
        yield (b",\n" if index else b"\n") + json.dumps(
            row, cls=DjangoJSONEncoder, ensure_ascii=False
        ).encode()
    yield b"\n]\n"


def _files_of(entry: PersonalData, rows) -> list[FieldFile]:
    found = []
    for name in entry.files:
        for obj in rows.exclude(**{name: ""}).only("pk", name):
            found.append(getattr(obj, name))
    return found


def user_export(*, user: User, destination: Path) -> dict[str, int]:
    """Everything the instance keeps about ``user``, as a ZIP at ``destination``: one JSON
    file per category, the original files, a manifest and a readable index.html.
    Returns the number of records per category."""
    counts: dict[str, int] = {}
    categories = []
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for entry in registry():
            if entry.category is None:
                continue
            rows = entry.rows_of(user)
            counts[entry.category] = rows.count()
            with archive.open(f"{entry.category}.json", "w") as handle:
                for chunk in _json_rows(rows, entry.fields):
                    handle.write(chunk)
            for stored in _files_of(entry, rows):
                with stored.open("rb") as source, archive.open(f"files/{stored.name}", "w") as target:
                    shutil.copyfileobj(source, target, 1024 * 1024)
            categories.append(
                {"name": entry.category, "file": f"{entry.category}.json", "purpose": entry.purpose}
            )
        manifest = {
            "schema_version": EXPORT_SCHEMA_VERSION,
            "generated_at": timezone.now().isoformat(),
            "subject": user.email,
            "categories": [{**c, "records": counts[c["name"]]} for c in categories],
            "recipients": _recipients_of(user),
            "sources": ["you, through this instance", "this instance, while it ran the models you chose"],
        }
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
        archive.writestr("index.html", render_to_string("accounts/export_index.html", {"manifest": manifest}))
    return counts


def _recipients_of(user: User) -> list[dict]:
    """Who received this person's words: this instance, and each cloud provider, with when."""
    from chat.models import Message, Provider

    received = (
        Message.objects.filter(conversation__owner=user)
        .values("provider")
        .annotate(messages=Count("id"), first=Min("created_at"), last=Max("created_at"))
        .order_by("provider")
    )
    return [
        {
            "recipient": "this instance" if row["provider"] == Provider.LOCAL else row["provider"],
            "messages": row["messages"],
            "first": row["first"].isoformat(),
            "last": row["last"].isoformat(),
        }
        for row in received
    ]


def _sessions_end(user: User) -> int:
    ended = [s.pk for s in Session.objects.iterator() if s.get_decoded().get(SESSION_KEY) == str(user.pk)]
    Session.objects.filter(pk__in=ended).delete()
    return len(ended)


@transaction.atomic
def user_erase(*, user: User) -> dict[str, int]:
    """Erase ``user`` as the registry says; returns a receipt of counts per model, no content."""
    counts: Counter[str] = Counter()
    files: list[FieldFile] = []
    own_row = None
    for entry in registry():
        if not entry.owner:
            own_row = entry
            continue
        rows = entry.rows_of(user)
        files += _files_of(entry, rows)
        if entry.erase == Erase.DELETE:
            counts.update(rows.delete()[1])
        elif entry.erase == Erase.UNLINK:
            counts[f"{entry.label} (unlinked)"] += rows.update(**{entry.owner: None})
        else:
            counts[f"{entry.label} (pseudonymised)"] += rows.update(**entry.pseudonymise)
    counts["sessions"] = _sessions_end(user)
    # Admin history about this account keeps its shape but no longer says who it was.
    counts["admin.LogEntry (scrubbed)"] = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(User), object_id=str(user.pk)
    ).update(object_repr="erased account", change_message="")
    if own_row is not None:
        files += _files_of(own_row, own_row.rows_of(user))
    counts.update(user.delete()[1])
    paths = [(stored.storage, stored.name) for stored in files]
    transaction.on_commit(lambda: [storage.delete(name) for storage, name in paths])
    return {label: count for label, count in counts.items() if count}
