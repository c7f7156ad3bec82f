"""State machines kept in a status column (a reply, a download).

Several processes move the same row (a worker writing, a person pressing Stop, the
periodic check for dead workers), so every move is a compare-and-set: an UPDATE that
applies only while the row is still in a state the move may start from, answering
whether it applied. The moves each machine allows are declared once, on its model
(``StateMachine``); ``StatefulQuerySet`` is the only way they are made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import models


@dataclass(frozen=True)
class StateMachine:
    """``moves``: each state and the states it may be moved to."""

    moves: Mapping[str, frozenset[str]]
    field: str = "status"

    def sources_of(self, target: str) -> frozenset[str]:
        return frozenset(source for source, targets in self.moves.items() if target in targets)


class StatefulQuerySet(models.QuerySet):
    """For a model with a ``STATES: StateMachine`` attribute."""

    def _machine(self) -> StateMachine:
        return self.model.STATES  # type: ignore[attr-defined]

    def transition(
        self,
        pk: Any,
        *,
        to: str,
        source: str | Iterable[str] | None = None,
        guard: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> bool:
        """Move row ``pk`` to ``to`` (writing ``fields`` with it) if it is in ``source`` (by
        default any state the machine moves to ``to`` from) and matches ``guard``; answers
        whether it moved. Asking for a move the machine does not allow is a bug."""
        machine = self._machine()
        allowed = machine.sources_of(to)
        sources = allowed if source is None else frozenset([source] if isinstance(source, str) else source)
        if not sources <= allowed:
            raise ValueError(f"{self.model.__name__} cannot move from {sorted(sources - allowed)} to {to!r}")
        rows = self.filter(pk=pk, **{f"{machine.field}__in": sources}, **(guard or {}))
        return bool(rows.update(**{machine.field: to}, **fields))

    def update_while(self, pk: Any, state: str | Iterable[str], **fields: Any) -> bool:
        """Write ``fields`` only while row ``pk`` is still in ``state``: progress of a reply
        or a download that something else may have ended meanwhile."""
        states = [state] if isinstance(state, str) else list(state)
        return bool(self.filter(pk=pk, **{f"{self._machine().field}__in": states}).update(**fields))

    def fail_stale(
        self,
        *,
        to: str,
        reason: Callable[[Any], str],
        guard: Iterable[str],
        announce: Callable[[Any], None],
        **fields: Any,
    ) -> int:
        """Move each row of this queryset (work whose worker went away) to the failed state
        ``to`` with ``reason(row)`` as its error, unless it changed since it was read (its
        state or a ``guard`` field such as its heartbeat); ``announce`` hears each one moved.
        Returns how many moved."""
        moved = 0
        field = self._machine().field
        row: Any
        for row in self:
            error = reason(row)
            current = {name: getattr(row, name) for name in guard}
            if self.model._default_manager.transition(  # type: ignore[attr-defined]
                row.pk, to=to, source=getattr(row, field), guard=current, error=error, **fields
            ):
                setattr(row, field, to)
                row.error = error
                for name, value in fields.items():
                    setattr(row, name, value)
                announce(row)
                moved += 1
        return moved
