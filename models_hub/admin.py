from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from .models import LocalModel


@admin.register(LocalModel)
class LocalModelAdmin(admin.ModelAdmin):
    list_display = ["name", "family", "status", "size", "context_length", "is_default", "is_bundled"]
    list_filter = ["family", "status"]
    readonly_fields = ["is_bundled", "created_at"]

    @admin.display(description="Size", ordering="size_bytes")
    def size(self, obj: LocalModel) -> str:
        return filesizeformat(obj.size_bytes)
