"""What stands in front of the apps: the probes and the Content-Security-Policy (Django
middleware), the check of forwarded headers and the sub-path (ASGI middleware, around the
whole application) and the origin check of websockets (ASGI middleware, in front of the sockets)."""

import ipaddress
from io import BytesIO

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import JsonResponse
from django.urls import set_script_prefix

from . import metrics, probes

_FORWARDED = b"x-forwarded-"


class ProbeMiddleware:
    """Answers /healthz, /readyz and /metrics first, before host checks, sessions or
    redirects: load balancers, container probes and scrapers call them with internal host
    names (/metrics checks its own token or allow-list)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info == "/healthz":
            return JsonResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})
        if request.path_info == "/readyz":
            ready, report = probes.readiness()
            shown = report if probes.details_shown_to(request) else {}
            return JsonResponse(
                {"status": "ready" if ready else "not ready", **shown},
                status=200 if ready else 503,
                headers={"Cache-Control": "no-store"},
            )
        if request.path_info == "/metrics":
            return metrics.metrics_response(request)
        return self.get_response(request)


class ContentSecurityPolicyMiddleware:
    """Every response says where its page may load scripts, styles and connections from:
    this site only, so that markup slipping past the Markdown sanitiser can run nothing.

    No page has an inline script, an inline handler or a style attribute, nor does the admin
    of Django 5.2 (tests/test_every_url.py checks every page), so no nonce is needed. ``'self'``
    covers the page's own websockets too (CSP3: ws/wss of the same host). Sign-in forms post
    here and are redirected to the provider, and Chromium checks ``form-action`` on that
    redirect: the configured providers' sign-in origins are allowed there, and Stripe's
    Checkout and Customer Portal when billing is on."""

    def __init__(self, get_response):
        self.get_response = get_response
        directives = {
            "default-src": ["'self'"],
            "script-src": ["'self'"],
            "style-src": ["'self'"],
            "img-src": ["'self'", "data:"],  # data: for the favicon in base.html
            "connect-src": ["'self'"],
            "object-src": ["'none'"],
            "base-uri": ["'self'"],
            "form-action": ["'self'", *settings.SOCIAL_SIGN_IN_ORIGINS, *settings.BILLING_REDIRECT_ORIGINS],
            "frame-ancestors": ["'none'"],
        }
        self.policy = "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.policy)
        return response


def _is_trusted_proxy(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.TRUSTED_PROXIES)


def _client_behind(proxies: list[str]) -> str | None:
    """The address the last of our proxies saw: read from the right, the first one that
    is not one of them (what a client writes itself is further left)."""
    for address in reversed(proxies):
        if not _is_trusted_proxy(address):
            try:
                return str(ipaddress.ip_address(address))
            except ValueError:
                return None
    return None


class TrustedProxyHeaders:
    """X-Forwarded-* headers count only from ``TRUSTED_PROXIES``: there the client address
    becomes the one the proxy saw (rate limits count the real person), from anyone else the
    headers are dropped (no client picks the address it is counted under, or claims HTTPS).
    Daphne's own ``--proxy-headers`` believes any peer, so ``localai serve`` never sets it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            scope = self._checked(scope)
        return await self.app(scope, receive, send)

    @staticmethod
    def _checked(scope: dict) -> dict:
        headers = scope["headers"]
        if not any(name.startswith(_FORWARDED) for name, _ in headers):
            return scope
        peer = scope.get("client")
        if not peer or not _is_trusted_proxy(peer[0]):
            kept = [(name, value) for name, value in headers if not name.startswith(_FORWARDED)]
            return {**scope, "headers": kept}
        chain = b",".join(value for name, value in headers if name == b"x-forwarded-for")
        client = _client_behind([part.strip() for part in chain.decode("latin-1").split(",") if part.strip()])
        return {**scope, "client": (client, 0)} if client else scope


class ScriptPrefix:
    """The prefix the app is served under (``URL_PATH``) is the ASGI ``root_path`` of every
    request and socket: Django and Channels' router take it off the path the proxy passes
    on whole. It is never the client's: daphne would take a ``Daphne-Root-Path`` header.
    Django puts it in front of reverse() per request; a socket gets it here, for the links
    in what it renders (a message's attachments)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "root_path": settings.URL_PATH}
        if scope["type"] == "websocket":
            set_script_prefix(settings.URL_PATH)  # this connection's context, and its threads'
        return await self.app(scope, receive, send)


class SameOriginSockets:
    """Opens a websocket only for a page of this site, as Django's CSRF check decides for a
    form: its Origin is the socket's own scheme, host and port (with ``BEHIND_PROXY``, the
    scheme and host the trusted proxy forwards) or one of ``CSRF_TRUSTED_ORIGINS``, and its
    host is one of ``ALLOWED_HOSTS``. Channels' ``AllowedHostsOriginValidator`` compares host
    names only, so a page on another port or over plain HTTP could drive a person's socket."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not _same_origin(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)


def _same_origin(scope: dict) -> bool:
    origin = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"origin"), None)
    if origin is None:
        return False
    # The handshake read as the page request it is (ws is http, wss is https), so that Django
    # applies ALLOWED_HOSTS and the forwarded host and scheme its settings trust.
    handshake = ASGIRequest(
        {**scope, "method": "GET", "scheme": "https" if scope.get("scheme") == "wss" else "http"}, BytesIO()
    )
    try:
        own = f"{handshake.scheme}://{handshake.get_host()}"
    except DisallowedHost:
        return False
    return origin == own or origin in settings.CSRF_TRUSTED_ORIGINS
