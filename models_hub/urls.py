from django.urls import path

from . import views

app_name = "hub"

urlpatterns = [
    path("", views.hub, name="index"),
    path("install/<slug:slug>/", views.install, name="install"),
    path("add/", views.add, name="add"),
    path("token/", views.token, name="token"),
    path("models/<slug:slug>/cancel/", views.cancel, name="cancel"),
    path("models/<slug:slug>/resume/", views.resume, name="resume"),
    path("models/<slug:slug>/delete/", views.delete, name="delete"),
    path("models/<slug:slug>/settings/", views.model_settings, name="settings"),
    path("models/<slug:slug>/default/", views.make_default, name="default"),
    path("models/<slug:slug>/health/", views.health_reset, name="health_reset"),
    path("speech/<slug:slug>/install/", views.speech_install, name="speech_install"),
    path("speech/<slug:slug>/cancel/", views.speech_cancel, name="speech_cancel"),
    path("speech/<slug:slug>/use/", views.speech_use, name="speech_use"),
    path("speech/<slug:slug>/delete/", views.speech_delete, name="speech_delete"),
]
