from django.contrib import admin
from django.urls import include, path

from accounts.urls import policy_urlpatterns
from accounts.views import admin_login, analytics_dashboard

admin.site.site_header = "LocalAI administration"
admin.site.site_title = "LocalAI admin"

urlpatterns = [
    path("admin/analytics/", admin.site.admin_view(analytics_dashboard), name="analytics_dashboard"),
    # Before the admin's own: its login view is replaced by the site's sign-in page.
    path("admin/login/", admin_login, name="admin_login"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("settings/", include("accounts.urls")),
    path("privacy/", include(policy_urlpatterns)),
    path("hub/", include("models_hub.urls")),
    path("", include("chat.urls")),
]
