from django.urls import path

from . import views

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("c/new/", views.conversation_start, name="start"),
    path("c/<uuid:conversation_id>/", views.conversation_detail, name="conversation"),
    path("c/<uuid:conversation_id>/messages/", views.messages_older, name="older"),
    path("c/<uuid:conversation_id>/send/", views.message_send, name="send"),
    path("c/<uuid:conversation_id>/stop/", views.reply_stop, name="stop"),
    path("c/<uuid:conversation_id>/rename/", views.conversation_rename, name="rename"),
    path("c/<uuid:conversation_id>/pin/", views.conversation_pin, name="pin"),
    path("c/<uuid:conversation_id>/delete/", views.conversation_delete, name="delete"),
    path("files/new/", views.upload_new, name="upload_new"),
    path("files/<uuid:upload_id>/", views.upload_download, name="upload_download"),
    path("files/<uuid:upload_id>/image/", views.upload_image, name="upload_image"),
    path("files/<uuid:upload_id>/delete/", views.upload_delete, name="upload_delete"),
    path("history/clear/", views.history_clear, name="history_clear"),
    path("voice/", views.voice_upload, name="voice_upload"),
    path("voice/<slug:token>/", views.voice_status, name="voice_status"),
    path("personas/", views.persona_list, name="personas"),
    path("personas/new/", views.persona_edit, name="persona_new"),
    path("personas/<int:persona_id>/edit/", views.persona_edit, name="persona_edit"),
    path("personas/<int:persona_id>/delete/", views.persona_delete, name="persona_delete"),
]
