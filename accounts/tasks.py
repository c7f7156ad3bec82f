from celery import shared_task
from django.core.management import call_command

from . import retention, services


@shared_task(name="accounts.build_export", ignore_result=True)
def build_export(archive_id: int) -> None:
    services.export_build(archive_id=archive_id)


@shared_task(name="accounts.enforce_retention", ignore_result=True)
def enforce_retention() -> None:
    retention.retention_enforce()


@shared_task(name="accounts.clear_expired_sessions", ignore_result=True)
def clear_expired_sessions() -> None:
    # Django never deletes an expired session by itself: its row (who was signed in) stays.
    call_command("clearsessions")
