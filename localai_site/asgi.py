import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "localai_site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.middleware import MfaRequiredSockets  # noqa: E402
from chat.routing import websocket_urlpatterns as chat_sockets  # noqa: E402
from localai_site.core.realtime import BindPublisherLoop  # noqa: E402
from localai_site.core.sockets import socket_auth  # noqa: E402
from localai_site.middleware import SameOriginSockets, ScriptPrefix, TrustedProxyHeaders  # noqa: E402
from models_hub.routing import websocket_urlpatterns as hub_sockets  # noqa: E402

application = ScriptPrefix(
    TrustedProxyHeaders(
        BindPublisherLoop(
            ProtocolTypeRouter(
                {
                    "http": django_asgi_app,
                    "websocket": SameOriginSockets(
                        socket_auth(MfaRequiredSockets(URLRouter([*chat_sockets, *hub_sockets])))
                    ),
                }
            )
        )
    )
)
