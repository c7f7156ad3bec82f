"""What /healthz and /readyz check."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.db import connection
from django.http import HttpRequest

from localai_site.core.queues import Queue
from localai_site.core.redis_client import redis_ok
from models_hub.workers import workers_by_queue


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def details_shown_to(request: HttpRequest) -> bool:
    """Whether /readyz may say which part is down and how many workers run: only to this
    machine (a container's own healthcheck, ``docker compose exec web``). Anyone else learns
    ready or not from the status code; the rest would map the instance for an attacker."""
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def readiness() -> tuple[bool, dict]:
    report: dict = {"database": "ok" if database_ok() else "down"}
    ready = report["database"] == "ok"
    if settings.SCALED:
        report["redis"] = "ok" if redis_ok() else "down"
        ready = ready and report["redis"] == "ok"
    if not settings.SCALED or report["redis"] == "ok":
        report["workers"] = workers_by_queue()
        ready = ready and report["workers"][Queue.LOCAL] > 0
    return ready, report
