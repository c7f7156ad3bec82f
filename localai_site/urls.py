from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "LocalAI administration"
admin.site.site_title = "LocalAI admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("settings/", include("accounts.urls")),
    path("hub/", include("models_hub.urls")),
    path("", include("chat.urls")),
]
