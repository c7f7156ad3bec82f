from celery import shared_task

from . import retention, services


@shared_task(name="accounts.build_export", ignore_result=True)
def build_export(archive_id: int) -> None:
    services.export_build(archive_id=archive_id)


@shared_task(name="accounts.enforce_retention", ignore_result=True)
def enforce_retention() -> None:
    retention.retention_enforce()
