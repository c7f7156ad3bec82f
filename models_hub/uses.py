"""What is using a local model right now, as the apps above the hub tell it.

The hub must not delete a model that is writing a reply, but replies belong to the chat,
which depends on the hub and not the other way round: so the chat registers a counter of
its replies in progress for a model here (in its ``AppConfig.ready``).
"""

from __future__ import annotations

from collections.abc import Callable

from .models import LocalModel

_counters: list[Callable[[LocalModel], int]] = []


def register_active_uses(counter: Callable[[LocalModel], int]) -> None:
    _counters.append(counter)


def active_uses(model: LocalModel) -> int:
    """Replies (or other work) in progress with ``model``, counted by everyone registered."""
    return sum(counter(model) for counter in _counters)
