from django.contrib import admin
from django.urls import include, path

from accounts.urls import policy_urlpatterns
from accounts.views import analytics_dashboard

admin.site.site_header = "LocalAI administration"
admin.site.site_title = "LocalAI admin"

urlpatterns = [
    path("admin/analytics/", admin.site.admin_view(analytics_dashboard), name="analytics_dashboard"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("settings/", include("accounts.urls")),
    path("privacy/", include(policy_urlpatterns)),
    path("hub/", include("models_hub.urls")),
    path("", include("chat.urls")),
]
