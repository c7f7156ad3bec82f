"""Settings of the instance kept in the database: one row each, always pk 1."""

from __future__ import annotations

from typing import Any, Self

from django.db import models


class SingletonModel(models.Model):
    """The one row of a settings table, made with ``defaults()`` the first time it is read."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def load(cls) -> Self:
        found = cls._default_manager.filter(pk=1).first()
        if found is None:
            found, _ = cls._default_manager.get_or_create(pk=1, defaults=cls.defaults())
        return found

    @classmethod
    def load_locked(cls) -> Self:
        """The row, locked until the transaction ends: decisions about the whole instance
        made under it happen one at a time (SQLite serialises writers anyway)."""
        cls.load()
        return cls._default_manager.select_for_update().get(pk=1)
