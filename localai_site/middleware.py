"""What stands in front of the apps: the probes (Django middleware) and the check of
forwarded headers (ASGI middleware, around the whole application)."""

import ipaddress

from django.conf import settings
from django.http import JsonResponse

from . import probes

_FORWARDED = b"x-forwarded-"


class ProbeMiddleware:
    """Answers /healthz and /readyz first, before host checks, sessions or redirects:
    load balancers and container probes call them with internal host names."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info == "/healthz":
            return JsonResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})
        if request.path_info == "/readyz":
            ready, report = probes.readiness()
            return JsonResponse(
                {"status": "ready" if ready else "not ready", **report},
                status=200 if ready else 503,
                headers={"Cache-Control": "no-store"},
            )
        return self.get_response(request)


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
