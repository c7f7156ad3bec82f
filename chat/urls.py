from django.urls import path

from . import api, views

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
    path("files/<uuid:upload_id>/edit/", views.upload_image_edit, name="upload_image_edit"),
    path("history/clear/", views.history_clear, name="history_clear"),
    path("images/", views.gallery, name="gallery"),
    path("images/clear/", views.generated_images_clear, name="images_clear"),
    path("images/g/<uuid:generation_id>/", views.generation_status, name="generation_status"),
    path("images/g/<uuid:generation_id>/delete/", views.generation_delete, name="generation_delete"),
    path("images/<uuid:image_id>/", views.generated_image, name="image"),
    path("images/<uuid:image_id>/download/", views.generated_image_download, name="image_download"),
    path("images/<uuid:image_id>/delete/", views.generated_image_delete, name="image_delete"),
    path("images/<uuid:image_id>/edit/", views.generated_image_edit, name="image_edit"),
    path("images/<uuid:image_id>/chat/", views.generated_image_to_chat, name="image_to_chat"),
    path("voice/", views.voice_upload, name="voice_upload"),
    path("voice/<slug:token>/", views.voice_status, name="voice_status"),
    path("personas/", views.persona_list, name="personas"),
    path("personas/new/", views.persona_edit, name="persona_new"),
    path("personas/<int:persona_id>/edit/", views.persona_edit, name="persona_edit"),
    path("personas/<int:persona_id>/delete/", views.persona_delete, name="persona_delete"),
    # The OpenAI-compatible API: its paths are the ones its clients ask for, without a slash.
    path("v1/models", api.models_list, name="api_models"),
    path("v1/chat/completions", api.chat_completions, name="api_chat_completions"),
]
