from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("profile/", views.profile, name="profile"),
    path("profile/avatar/", views.avatar, name="avatar"),
    path("privacy/", views.privacy, name="privacy"),
    path("privacy/export/", views.export_start, name="export_start"),
    path("privacy/exports/<int:export_id>/status/", views.export_status, name="export_status"),
    path("privacy/exports/<str:token>/download/", views.export_download, name="export_download"),
    path("privacy/analytics/", views.analytics_consent, name="analytics_consent"),
    path("privacy/delete-account/", views.account_delete, name="account_delete"),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path(
        "admin-exports/<int:export_id>/download/", views.export_admin_download, name="export_admin_download"
    ),
]

# The public policy pages, mounted at /privacy/ (localai_site/urls.py).
policy_urlpatterns = (
    [
        path("", views.policy, name="show"),
        path("v<int:version>/", views.policy, name="version"),
        path("review/", views.policy_review, name="review"),
    ],
    "policy",
)
