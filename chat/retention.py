"""Chat's row of the retention table (``settings.RETENTION_DAYS``), registered with
``accounts.retention`` when the app is ready."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from localai_site.core.files import files_delete_after_commit

from .models import Upload


@transaction.atomic
def unsent_uploads_purge(cutoff: datetime) -> int:
    """Files attached in a composer but never sent, with their stored bytes: nobody can
    send them any more once the page that held them is gone."""
    unsent = Upload.objects.filter(message__isnull=True, created_at__lt=cutoff)
    files_delete_after_commit([upload.file for upload in unsent.only("file")])
    return unsent.delete()[0]
