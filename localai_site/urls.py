from django.contrib import admin
from django.urls import include, path

from . import views

admin.site.site_header = "LocalAI administration"
admin.site.site_title = "LocalAI admin"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("settings/", include("accounts.urls")),
    path("", include("chat.urls")),
]
