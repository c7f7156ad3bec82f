import os

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun, worker_ready, worker_shutting_down

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "localai_site.settings")

app = Celery("localai")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _announce_worker(sender, **kwargs) -> None:
    from models_hub.workers import heartbeat_start  # Django is set up by now

    heartbeat_start([queue.name for queue in sender.app.amqp.queues.consume_from.values()])


@worker_shutting_down.connect
def _withdraw_worker(**kwargs) -> None:
    from models_hub.workers import heartbeat_stop

    heartbeat_stop()


@task_prerun.connect
def _prepare_task_thread(task, **kwargs) -> None:
    from localai_site.core.tasks import task_slot_take, task_thread_prepare  # Django is set up by now

    task_thread_prepare()  # a pool's threads start without the request's script prefix
    task.request.took_slot = task_slot_take(task)


@task_postrun.connect
def _end_task_thread(task, **kwargs) -> None:
    from localai_site.core.tasks import task_slot_give_back

    if getattr(task.request, "took_slot", False):
        task_slot_give_back()


@setup_logging.connect
def _keep_django_logging(**kwargs) -> None:
    # Connected, this stops Celery replacing the root logger's handlers: Django's LOGGING
    # (console, and crash reports stored on the instance) stays in charge in workers too.
    pass
