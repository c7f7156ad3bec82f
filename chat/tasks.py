import uuid

from celery import shared_task

from . import services


# Holds no database connection while it streams: hundreds run at once (localai_site/core/tasks.py).
@shared_task(name="chat.generate_reply", ignore_result=True, streams_without_connection=True)
def generate_reply(message_id: int) -> None:
    services.reply_generate(message_id=message_id)


@shared_task(name="chat.read_document", ignore_result=True)
def read_document(upload_id: str) -> None:
    services.upload_document_read(upload_id=uuid.UUID(upload_id))


@shared_task(name="chat.generate_images", ignore_result=True)
def generate_images(generation_id: str) -> None:
    services.image_generation_run(generation_id=uuid.UUID(generation_id))


@shared_task(name="chat.fail_stale_replies", ignore_result=True)
def fail_stale_replies() -> None:
    services.replies_fail_stale()


@shared_task(name="chat.transcribe_voice", ignore_result=True)
def transcribe_voice(token: str) -> None:
    services.voice_transcribe(token=token)


@shared_task(name="chat.forget_stale_recordings", ignore_result=True)
def forget_stale_recordings() -> None:
    services.voice_recordings_forget_stale()
