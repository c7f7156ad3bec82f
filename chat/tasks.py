from celery import shared_task

from . import services


@shared_task(name="chat.generate_reply", ignore_result=True)
def generate_reply(message_id: int) -> None:
    services.reply_generate(message_id=message_id)


@shared_task(name="chat.fail_stale_replies", ignore_result=True)
def fail_stale_replies() -> None:
    services.replies_fail_stale()
