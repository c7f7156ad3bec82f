from django import forms
from django.contrib import admin, messages
from django.db.models import Count

from . import services
from .models import CloudModel, CloudProvider, Conversation, ImageGeneration, Message, Persona
from .providers import ProviderError
from .providers.cloud import PRESET_BASE_URLS


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    """Metadata only: reading people's conversations is not part of running the instance.
    Nothing here shows a title or a message (a conversation is named by its id): data
    requests are answered by the export and erasure actions, not by reading."""

    list_display = ["id", "owner", "model", "provider", "message_count", "created_at", "updated_at"]
    list_filter = ["provider"]
    search_fields = ["owner__email", "id"]
    fields = ["id", "owner", "model", "provider", "message_count", "created_at", "updated_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(message_count=Count("messages"))

    @admin.display(description="Messages", ordering="message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj.message_count

    def has_add_permission(self, request):
        return False

    def get_deleted_objects(self, objs, request):
        # The confirmation counts what goes by kind, without naming the files given in it.
        _, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        return [str(conversation) for conversation in objs], model_count, perms_needed, protected

    # Through the service, so a reply being written stops and the files given in it go too.
    def delete_model(self, request, obj):
        services.conversation_delete(conversation=obj)

    def delete_queryset(self, request, queryset):
        for conversation in queryset:
            services.conversation_delete(conversation=conversation)


@admin.register(ImageGeneration)
class ImageGenerationAdmin(admin.ModelAdmin):
    """Who asked which provider for images, and how it went: metadata only, like conversations
    (the prompt and the images are the person's own; their export answers a data request)."""

    list_display = ["id", "owner", "status", "model", "provider", "count", "sent_image", "created_at"]
    list_filter = ["status", "provider"]
    search_fields = ["owner__email", "id"]
    fields = [
        "id",
        "owner",
        "status",
        "error",
        "model",
        "provider",
        "shape",
        "size",
        "quality",
        "count",
        "sent_image",
        "created_at",
        "finished_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def get_deleted_objects(self, objs, request):
        _, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        return [str(generation) for generation in objs], model_count, perms_needed, protected

    # Through the service, so the image files go with their rows.
    def delete_model(self, request, obj):
        services.image_generation_delete(generation=obj)

    def delete_queryset(self, request, queryset):
        for generation in queryset:
            services.image_generation_delete(generation=generation)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "conversation",
        "role",
        "status",
        "model",
        "provider",
        "completion_tokens",
        "created_at",
    ]
    list_filter = ["status", "role", "provider"]
    fields = [
        "conversation",
        "role",
        "status",
        "error",
        "model",
        "provider",
        "prompt_tokens",
        "completion_tokens",
        "ttft_ms",
        "duration_ms",
        "created_at",
        "started_at",
        "finished_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False


class CloudProviderForm(forms.ModelForm):
    base_url = forms.URLField(
        max_length=300, required=False, assume_scheme="https", help_text="Leave empty for the kind's preset."
    )
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted and never shown again. Leave empty to keep the current key.",
    )

    class Meta:
        model = CloudProvider
        fields = ["name", "slug", "kind", "base_url", "api_key", "transcription_model", "enabled"]

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("base_url") and cleaned.get("kind") not in PRESET_BASE_URLS:
            self.add_error("base_url", "A custom endpoint needs its base URL, e.g. http://host:8000/v1.")
        return cleaned


class CloudModelInline(admin.TabularInline):
    model = CloudModel
    fields = ["name", "label", "enabled", "context_length", "sees_images", "makes_images"]
    readonly_fields = ["name"]
    extra = 0
    can_delete = True

    def has_add_permission(self, request, obj=None):
        return False  # models come from discovery


@admin.register(CloudProvider)
class CloudProviderAdmin(admin.ModelAdmin):
    form = CloudProviderForm
    list_display = ["name", "kind", "base_url", "api_key_hint", "enabled", "models_enabled"]
    readonly_fields = ["api_key_hint"]
    inlines = [CloudModelInline]
    actions = ["discover_models"]
    prepopulated_fields = {"slug": ["name"]}

    @admin.display(description="Models enabled")
    def models_enabled(self, obj: CloudProvider) -> int:
        return obj.models.filter(enabled=True).count()

    def save_model(self, request, obj, form, change):
        services.cloud_provider_save(provider=obj, api_key=form.cleaned_data.get("api_key"))

    @admin.action(description="Discover models (GET /v1/models)")
    def discover_models(self, request, queryset):
        for provider in queryset:
            try:
                found = services.cloud_models_discover(provider=provider)
            except ProviderError as exc:
                self.message_user(request, f"{provider}: {exc}", messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"{provider}: {found} new model(s); enable the ones people may use.",
                    messages.SUCCESS,
                )


@admin.register(CloudModel)
class CloudModelAdmin(admin.ModelAdmin):
    """Models by hand, for a provider whose list lacks one (image model names change often)."""

    list_display = ["name", "provider", "enabled", "sees_images", "makes_images"]
    list_filter = ["provider", "enabled", "makes_images"]
    list_editable = ["enabled", "makes_images"]
    fields = ["provider", "name", "label", "enabled", "context_length", "sees_images", "makes_images"]


def _is_private(persona: Persona | None) -> bool:
    return persona is not None and persona.owner_id is not None and not persona.is_shared


@admin.register(Persona)
class PersonaAdmin(admin.ModelAdmin):
    """Shared and built-in personas in full. A person's private one by its metadata only, and
    read-only: its description and prompt are their words, and sharing it would publish them."""

    list_display = ["name", "owner", "is_shared", "is_builtin", "default_model", "temperature", "created_at"]
    list_filter = ["is_shared", "is_builtin"]
    search_fields = ["name"]
    fields = ["name", "description", "system_prompt", "default_model", "temperature", "is_shared", "owner"]
    private_fields = ["id", "name", "owner", "default_model", "temperature", "is_shared", "created_at"]
    raw_id_fields = ["owner"]

    def get_fields(self, request, obj=None):
        return self.private_fields if _is_private(obj) else self.fields

    def get_readonly_fields(self, request, obj=None):
        return self.private_fields if _is_private(obj) else ()

    def has_change_permission(self, request, obj=None):
        return not _is_private(obj) and super().has_change_permission(request, obj)
