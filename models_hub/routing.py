from django.urls import path

from .consumers import HubConsumer

websocket_urlpatterns = [
    path("ws/hub/", HubConsumer.as_asgi(), name="socket"),
]
# For reverse(..., urlconf="models_hub.routing"): the page's socket path, under a sub-path too.
urlpatterns = websocket_urlpatterns
