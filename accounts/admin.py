from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .models import InstanceSettings, Invitation, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "display_name", "is_staff", "is_active", "date_joined", "last_login"]
    search_fields = ["email", "display_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("display_name", "avatar")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(InstanceSettings)
class InstanceSettingsAdmin(admin.ModelAdmin):
    list_display = ["__str__", "signup_mode", "updated_at"]

    def has_add_permission(self, request):
        return not InstanceSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "email", "signup_link", "created_at", "accepted_at"]
    readonly_fields = ["signup_link", "created_by", "accepted_by", "accepted_at"]
    fields = ["email", "signup_link", "created_by", "accepted_by", "accepted_at"]

    @admin.display(description="Signup link")
    def signup_link(self, obj: Invitation) -> str:
        if not obj.pk:
            return "Shown once saved."
        return f"/accounts/signup/?invite={obj.token}"

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
