from django.urls import path

from .consumers import ChatConsumer

websocket_urlpatterns = [
    path("ws/chat/<str:conversation_id>/", ChatConsumer.as_asgi(), name="socket"),
]
# For reverse(..., urlconf="chat.routing"): the page's socket path, under a sub-path too.
urlpatterns = websocket_urlpatterns
