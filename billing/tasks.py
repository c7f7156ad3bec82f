from celery import shared_task

from . import webhooks


@shared_task(name="billing.apply_event", ignore_result=True)
def apply_event(event_id: int) -> None:
    webhooks.stripe_event_apply(event_id=event_id)


@shared_task(name="billing.retry_events", ignore_result=True)
def retry_events() -> None:
    webhooks.events_retry()
