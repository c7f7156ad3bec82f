from django.urls import path

from . import views

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("c/new/", views.conversation_start, name="start"),
    path("c/<uuid:conversation_id>/", views.conversation_detail, name="conversation"),
    path("c/<uuid:conversation_id>/send/", views.message_send, name="send"),
    path("c/<uuid:conversation_id>/stop/", views.reply_stop, name="stop"),
    path("c/<uuid:conversation_id>/delete/", views.conversation_delete, name="delete"),
]
