"""/metrics: the instance's state in Prometheus's text format, for the operator's scraper.

Read from the database and the broker at each scrape (a few indexed queries), so any web
process answers for the whole instance, workers included. Counts and speeds only: no
person, address, conversation or text is ever named (labels are models, queues, statuses).
Off (404) until ``METRICS_TOKEN`` or ``METRICS_ALLOWED_IPS`` is set.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from redis import RedisError

from accounts.selectors import crash_report_totals
from chat.selectors import model_speeds_since, replies_finished_since, replies_in_progress
from localai_site.core.queues import Queue
from localai_site.core.tasks import tasks_waiting
from models_hub.selectors import downloads_by_status
from models_hub.workers import WorkerView, workers_list

# Speeds and outcomes are of the replies that ended this long ago at most (as rate()[5m]).
WINDOW = timedelta(minutes=5)
QUANTILES = (0.5, 0.9, 0.99)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, str], float]


def _address_allowed(request: HttpRequest) -> bool:
    # REMOTE_ADDR is the peer's, or behind BEHIND_PROXY the one a trusted proxy saw
    # (localai_site.middleware.TrustedProxyHeaders): never one the client forwarded itself.
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOWED_IPS)


def _token_given(request: HttpRequest) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    token = settings.METRICS_TOKEN
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_response(request: HttpRequest) -> HttpResponse:
    """The metrics for a scraper that shows the token or comes from an allowed address."""
    headers = {"Cache-Control": "no-store"}
    if not settings.METRICS_TOKEN and not settings.METRICS_ALLOWED_IPS:
        return HttpResponse("Not found.\n", status=404, content_type="text/plain", headers=headers)
    if not (settings.METRICS_TOKEN and _token_given(request)) and not _address_allowed(request):
        if settings.METRICS_TOKEN:
            headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return HttpResponse(
                "A bearer token is required.\n", status=401, content_type="text/plain", headers=headers
            )
        return HttpResponse(
            "Not allowed from this address.\n", status=403, content_type="text/plain", headers=headers
        )
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE, headers=headers)


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Exposition:
    """Prometheus's text format, version 0.0.4: each family's HELP and TYPE, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, help_text: str, samples: Iterable[Sample], kind: str = "gauge") -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            shown = ",".join(f'{key}="{_escaped(str(label))}"' for key, label in labels.items())
            self.lines.append(f"{name}{{{shown}}} {_number(value)}" if shown else f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _quantile(ordered: list[int], q: float) -> int:
    """The nearest-rank quantile of values sorted smallest first."""
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def metrics_text() -> str:
    since = timezone.now() - WINDOW
    window_s = int(WINDOW.total_seconds())
    out = Exposition()
    out.family(
        "localai_replies_in_progress",
        "Replies queued or being written, by where the model runs (local or cloud) and status.",
        (
            ({"kind": kind, "status": status}, n)
            for (kind, status), n in sorted(replies_in_progress().items())
        ),
    )
    out.family(
        "localai_replies_finished_recent",
        f"Replies that ended in the last {window_s} seconds, by kind and status (done, stopped, failed).",
        (
            ({"kind": kind, "status": status}, n)
            for (kind, status), n in sorted(replies_finished_since(since=since).items())
        ),
    )
    speeds = model_speeds_since(since=since)
    out.family(
        "localai_tokens_per_second",
        f"Tokens a model wrote per second after its first, over the replies of the last {window_s} seconds.",
        (({"model": s.model}, s.tokens_per_second) for s in speeds if s.tokens_per_second is not None),
    )
    out.family(
        "localai_time_to_first_token_seconds",
        f"Time to a reply's first token, quantiles over the replies of the last {window_s} seconds.",
        (
            ({"model": s.model, "quantile": str(q)}, _quantile(s.ttft_ms, q) / 1000)
            for s in speeds
            for q in QUANTILES
        ),
    )
    out.family(
        "localai_replies_timed_recent",
        f"Replies of the last {window_s} seconds the time to first token is taken over, by model.",
        (({"model": s.model}, len(s.ttft_ms)) for s in speeds),
    )
    _broker_families(out)
    out.family(
        "localai_model_downloads",
        "Downloads of local and speech models under way or failed, by status.",
        (({"status": status}, n) for status, n in downloads_by_status().items()),
    )
    crashes = crash_report_totals()
    out.family(
        "localai_crash_reports",
        "Crash reports stored on the instance (one per kind of failure), by source.",
        (({"source": source}, reports) for source, (reports, _) in crashes.items()),
    )
    out.family(
        "localai_crash_occurrences",
        "Times the failures of the stored crash reports happened, by source.",
        (({"source": source}, seen) for source, (_, seen) in crashes.items()),
    )
    out.family(
        "localai_metrics_window_seconds", "The window of the *_recent and speed metrics.", [({}, window_s)]
    )
    return out.text()


@dataclass(frozen=True)
class QueuesView:
    waiting: dict[str, int]  # tasks on each queue no worker has taken yet
    workers: list[WorkerView]

    def workers_serving(self, queue: str) -> int:
        return sum(queue in worker.queues for worker in self.workers)


def queues_view() -> QueuesView | None:
    """The queues and the live workers, from Redis in scaled mode: None while it is down."""
    try:
        return QueuesView(waiting=tasks_waiting(), workers=workers_list())
    except RedisError:
        return None


def _broker_families(out: Exposition) -> None:
    view = queues_view()
    if settings.SCALED:
        out.family(
            "localai_redis_up",
            "Whether Redis (the task queue, the live state) answers.",
            [({}, 0 if view is None else 1)],
        )
    if view is None:
        return
    out.family(
        "localai_queue_depth",
        "Tasks started on each queue that no worker has taken yet.",
        (({"queue": queue}, n) for queue, n in view.waiting.items()),
    )
    out.family(
        "localai_workers",
        "Live worker processes serving each queue (embedded mode: this process, every queue).",
        (({"queue": queue}, view.workers_serving(queue)) for queue in map(str, Queue)),
    )
    out.family(
        "localai_models_loaded",
        "Local models held in memory by the workers, by model and whether one is writing a reply.",
        _loaded_samples(view.workers),
    )


def _loaded_samples(workers: list[WorkerView]) -> list[Sample]:
    counts: dict[tuple[str, str], int] = {}
    for worker in workers:
        for model in worker.loaded:
            key = (model["slug"], "true" if model.get("in_use") else "false")
            counts[key] = counts.get(key, 0) + 1
    return [({"model": slug, "in_use": in_use}, n) for (slug, in_use), n in sorted(counts.items())]
