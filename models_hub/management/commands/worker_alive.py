"""``localai worker_alive``: the health check of a worker container."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from redis import RedisError

from models_hub.workers import HEARTBEAT_TTL_S, announced_from_here


class Command(BaseCommand):
    help = (
        "Exit 0 when a worker on this machine sent its heartbeat lately (it runs and reaches "
        "Redis), 1 otherwise: a cheap health check, unlike `celery inspect ping`."
    )
    requires_system_checks: list[str] = []

    def handle(self, *args, **options) -> None:
        if not settings.SCALED:
            raise CommandError("localai worker_alive needs REDIS_URL: workers run in scaled mode only.")
        try:
            alive = announced_from_here()
        except RedisError as exc:
            raise CommandError(f"Redis does not answer ({exc}).") from exc
        if not alive:
            raise CommandError(f"No worker on this machine sent a heartbeat in the last {HEARTBEAT_TTL_S} s.")
        self.stdout.write("A worker on this machine is alive.")
