"""Admin → Operations: the instance at a glance for the staff who run it, on one page.

Replies in progress, queues and workers with the models they hold, downloads, replies per day,
crash reports, open data requests and people, each with the admin page that acts on it.
Counts only, as /metrics (``localai_site.metrics``): no conversation, message or title is
shown, and each section needs the permission its admin pages need.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import admin
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.charts import stacked_days
from accounts.models import CrashReport, Invitation, User
from accounts.selectors import data_requests_open, invitation_usable
from billing.selectors import people_per_plan
from chat.selectors import replies_in_progress, replies_per_day
from localai_site.core.queues import Queue
from models_hub.permissions import can_manage_models
from models_hub.selectors import downloads_by_status
from models_hub.workers import WorkerView

from .metrics import queues_view

CHART_DAYS = 14
LISTED = 5  # crash reports and data requests shown; the rest are one click away


@dataclass(frozen=True)
class QueueRow:
    queue: str
    waiting: int | None  # None: the broker cannot be asked (Redis down)
    workers: int | None


def _queues() -> tuple[list[QueueRow], list[WorkerView], bool]:
    """Each queue's waiting tasks and live workers, the workers, and whether Redis answered."""
    view = queues_view()
    if view is None:
        return [QueueRow(str(queue), None, None) for queue in Queue], [], False
    rows = [QueueRow(str(q), view.waiting.get(str(q), 0), view.workers_serving(str(q))) for q in Queue]
    return rows, view.workers, True


def operations_context(user: User) -> dict:
    queues, workers, broker_ok = _queues()
    active = replies_in_progress()
    context: dict = {
        "replies": {
            kind: {"queued": active[kind, "queued"], "streaming": active[kind, "streaming"]}
            for kind in ("local", "cloud")
        },
        "queues": queues,
        "broker_ok": broker_ok,
        "workers": workers,
        "downloads": downloads_by_status(),
        "hub_link": can_manage_models(user),
        "chart": stacked_days(
            f"Replies per day, last {CHART_DAYS} days",
            replies_per_day(days=CHART_DAYS),
            [
                ("local", "bar-local", "by local models"),
                ("cloud", "bar-cloud", "by cloud models"),
                ("failed", "bar-failed", "failed"),
            ],
        ),
        "analytics_link": user.has_perm("accounts.view_usagedaily"),
    }
    if user.has_perm("accounts.view_crashreport"):
        context["crashes"] = list(CrashReport.objects.all()[:LISTED])
        context["crash_total"] = CrashReport.objects.count()
    if user.has_perm("accounts.handle_data_requests"):
        open_requests = data_requests_open()
        context["requests"] = list(open_requests[:LISTED])
        context["requests_total"] = open_requests.count()
        context["requests_overdue"] = open_requests.filter(deadline_at__lt=timezone.now()).count()
    if user.has_perm("accounts.view_user"):
        context["people"] = {
            **User.objects.aggregate(
                active=Count("pk", filter=Q(is_active=True)),
                deactivated=Count("pk", filter=Q(is_active=False)),
            ),
            "invitations": invitation_usable().count(),
            "can_invite": user.has_perm(f"accounts.add_{Invitation._meta.model_name}"),
        }
        if user.has_perm("billing.view_subscription"):
            context["plans"] = people_per_plan()
    return context


def operations_dashboard(request: HttpRequest) -> HttpResponse:
    """Mounted inside the admin (``admin.site.admin_view``): staff only."""
    context = {
        **admin.site.each_context(request),
        "title": "Operations",
        "now": timezone.now(),
        **operations_context(request.user),
    }
    return render(request, "admin/operations.html", context)
