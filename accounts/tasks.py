from celery import shared_task

from . import services


@shared_task(name="accounts.build_export", ignore_result=True)
def build_export(archive_id: int) -> None:
    services.export_build(archive_id=archive_id)


@shared_task(name="accounts.purge_exports", ignore_result=True)
def purge_exports() -> None:
    services.exports_purge()
