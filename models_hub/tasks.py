from celery import shared_task

from . import runtime, services


@shared_task(name="models_hub.download_model", ignore_result=True)
def download_model(model_id: int) -> None:
    services.model_download(model_id=model_id)


@shared_task(name="models_hub.download_speech_model", ignore_result=True)
def download_speech_model(model_id: int) -> None:
    services.speech_model_download(model_id=model_id)


@shared_task(name="models_hub.forget_prompts", ignore_result=True)
def forget_prompts(cache_keys: list[str]) -> None:
    runtime.prompt_caches_forget_here(cache_keys)


@shared_task(name="models_hub.fail_stale_downloads", ignore_result=True)
def fail_stale_downloads() -> None:
    services.downloads_fail_stale()
