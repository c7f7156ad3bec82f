"""The personal-data registry: where each app says what it keeps about a person.

Every app declares, in its own ``privacy.py``, which of its models hold personal data,
how each is exported and how each is erased. Export and erasure walk this registry, so a
model that is not registered is neither exported nor erased; a test fails when a model
linked to a user is missing here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache

from django.db import models
from django.utils.module_loading import autodiscover_modules


class Erase(enum.StrEnum):
    DELETE = "delete"
    UNLINK = "unlink"  # the row is someone else's; only its link to the person goes
    PSEUDONYMISE = "pseudonymise"  # records the law makes us keep: kept, not identifying


@dataclass(frozen=True)
class PersonalData:
    model: type[models.Model]
    owner: str  # lookup from the model to the user; "" for the user row itself
    purpose: str
    category: str | None  # the export's file for it; None: not exported (secrets, internals)
    fields: tuple[str, ...] = ()
    erase: Erase = Erase.DELETE
    files: tuple[str, ...] = ()  # file fields: exported as files, deleted on erasure
    # For PSEUDONYMISE: the values that replace identifying ones; a callable gets the user.
    pseudonymise: Mapping[str, object | Callable] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.model._meta.label

    def pseudonyms_for(self, user) -> dict[str, object]:
        return {name: value(user) if callable(value) else value for name, value in self.pseudonymise.items()}

    def rows_of(self, user) -> models.QuerySet:
        return self.model._default_manager.filter(**{self.owner or "pk": user.pk})


_entries: list[PersonalData] = []


def register(*entries: PersonalData) -> None:
    _entries.extend(entries)


@cache
def registry() -> tuple[PersonalData, ...]:
    autodiscover_modules("privacy")
    return tuple(_entries)


def pseudonym(user) -> str:
    """A stable reference to a person that does not say who they are."""
    import hashlib
    import hmac

    from django.conf import settings

    return hmac.new(settings.SECRET_KEY.encode(), f"subject:{user.pk}".encode(), hashlib.sha256).hexdigest()[
        :16
    ]
