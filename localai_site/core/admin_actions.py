"""Admin actions that ask first, then act on each selected object in turn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from .refusals import Refusal

EachAction = Callable[[Any, HttpRequest, Any], Any]


def confirmed_action(
    *,
    description: str,
    title: str,
    explanation: str,
    confirm_label: str,
    done: Callable[[Model, Any], str],
    dangerous: bool = False,
    permissions: tuple[str, ...] = (),
) -> Callable[[EachAction], Callable]:
    """Make ``each(modeladmin, request, obj)`` an admin action: a page listing the selected
    objects asks for confirmation; then each is done in turn, ``done(obj, result)`` saying so,
    and a ``Refusal`` for one becomes a warning for that one while the others go on."""

    def decorate(each: EachAction) -> Callable:
        def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet):
            if request.POST.get("confirmed") != "yes":
                context = {
                    **modeladmin.admin_site.each_context(request),
                    "title": title,
                    "explanation": explanation,
                    "queryset": queryset,
                    "action": each.__name__,
                    "confirm_label": confirm_label,
                    "dangerous": dangerous,
                    "opts": modeladmin.model._meta,
                }
                return TemplateResponse(request, "admin/confirm_action.html", context)
            for obj in list(queryset):  # a list: an erasure removes rows the queryset names
                try:
                    result = each(modeladmin, request, obj)
                except Refusal as refusal:
                    modeladmin.message_user(request, f"{obj}: {refusal.message}", messages.WARNING)
                else:
                    modeladmin.message_user(request, done(obj, result), messages.SUCCESS)
            return None

        action.__name__ = each.__name__
        return admin.action(description=description, permissions=list(permissions) or None)(action)

    return decorate
