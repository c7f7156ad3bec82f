from django.contrib import admin, messages
from django.db import transaction
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat

from localai_site.core.admin_actions import confirmed_action
from localai_site.core.refusals import Refusal

from . import services
from .models import LocalModel


@admin.register(LocalModel)
class LocalModelAdmin(admin.ModelAdmin):
    """To look at; models are installed, configured and made default on the hub page
    (templates say so), and deleting goes through the hub's rules: the bundled model stays,
    a model writing replies waits for them, a downloaded file leaves the disk with it."""

    list_display = ["name", "family", "status", "size", "context_length", "is_default", "is_bundled"]
    list_filter = ["family", "status"]
    actions = ["delete_selected"]  # in place of Django's, which would bypass the rules

    @admin.display(description="Size", ordering="size_bytes")
    def size(self, obj: LocalModel) -> str:
        return filesizeformat(obj.size_bytes)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def delete_model(self, request, obj: LocalModel) -> None:
        services.model_delete(model=obj)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except Refusal as refusal:  # its transaction, and the log entry in it, rolled back
            self.message_user(request, refusal.message, messages.ERROR)
            return redirect("admin:models_hub_localmodel_change", object_id)

    @confirmed_action(
        description="Delete selected local models",
        title="Delete these models?",
        explanation="Each is removed from the hub; a downloaded file is deleted from the disk, "
        "a file added by its path stays where it is.",
        confirm_label="Yes, delete",
        done=lambda model, _: f"{model} was deleted.",
        dangerous=True,
        permissions=("delete",),
    )
    def delete_selected(self, request, model: LocalModel) -> None:
        with transaction.atomic():  # a refusal leaves no log entry behind
            self.log_deletions(request, LocalModel.objects.filter(pk=model.pk))
            services.model_delete(model=model)
