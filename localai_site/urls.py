from django.contrib import admin
from django.urls import include, path

from accounts.urls import policy_urlpatterns
from accounts.views import SignupView, SocialSignupView, admin_login, analytics_dashboard

from .operations import operations_dashboard

admin.site.site_header = "LocalAI administration"
admin.site.site_title = "LocalAI admin"

urlpatterns = [
    path("admin/analytics/", admin.site.admin_view(analytics_dashboard), name="analytics_dashboard"),
    path("admin/operations/", admin.site.admin_view(operations_dashboard), name="operations_dashboard"),
    # Before the admin's own: its login view is replaced by the site's sign-in page.
    path("admin/login/", admin_login, name="admin_login"),
    path("admin/", admin.site.urls),
    # Before allauth's own: the same views, showing a last-moment refusal on the form.
    path("accounts/signup/", SignupView.as_view(), name="account_signup"),
    path("accounts/3rdparty/signup/", SocialSignupView.as_view(), name="socialaccount_signup"),
    path("accounts/", include("allauth.urls")),
    path("settings/", include("accounts.urls")),
    path("privacy/", include(policy_urlpatterns)),
    path("hub/", include("models_hub.urls")),
    path("billing/", include("billing.urls")),
    path("", include("localai_site.app_shell")),
    path("", include("chat.urls")),
]
