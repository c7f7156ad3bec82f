"""The frames the hub's socket sends (see static/models_hub/hub.js), and their publishing."""

from __future__ import annotations

from typing import Any

from localai_site.core.realtime import publisher

from .models import LocalModel, SpeechModel

HUB_GROUP = "hub"


def model_event(
    model: LocalModel, *, speed_bps: float | None = None, eta_s: float | None = None
) -> dict[str, Any]:
    return {
        "type": "model",
        "slug": model.slug,
        "status": model.status,
        "status_label": model.get_status_display(),
        # The page renders its buttons from these: it reloads when they change.
        "actions": sorted(str(action) for action in model.actions),
        "downloaded_bytes": model.downloaded_bytes,
        "size_bytes": model.size_bytes,
        "error": model.error,
        "speed_bps": None if speed_bps is None else round(speed_bps),
        "eta_s": None if eta_s is None else round(eta_s),
    }


def removed_event(slug: str) -> dict[str, Any]:
    return {"type": "removed", "slug": slug}


def model_event_publish(
    model: LocalModel, *, speed_bps: float | None = None, eta_s: float | None = None
) -> None:
    """Tell every admin watching the hub how ``model`` stands now."""
    publisher.publish(HUB_GROUP, model_event(model, speed_bps=speed_bps, eta_s=eta_s))


def removed_event_publish(slug: str) -> None:
    publisher.publish(HUB_GROUP, removed_event(slug))


def speech_event(model: SpeechModel) -> dict[str, Any]:
    """A speech model's download: the page follows its bytes, and reloads when its state (and
    so its buttons) changes."""
    return {
        "type": "speech",
        "slug": model.slug,
        "status": model.status,
        "downloaded_bytes": model.downloaded_bytes,
        "size_bytes": model.size_bytes,
    }


def speech_event_publish(model: SpeechModel) -> None:
    publisher.publish(HUB_GROUP, speech_event(model))
