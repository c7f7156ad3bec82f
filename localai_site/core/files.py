"""Stored files follow the rows that name them."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models.fields.files import FieldFile


def files_delete_after_commit(files: Iterable[FieldFile]) -> None:
    """Delete ``files`` from storage once the transaction deleting their rows commits: a
    rollback keeps both the rows and their files. Call it before the rows are deleted."""
    paths = [(stored.storage, stored.name) for stored in files if stored and stored.name]

    def delete() -> None:
        for storage, name in paths:
            storage.delete(name)

    if paths:
        transaction.on_commit(delete)
