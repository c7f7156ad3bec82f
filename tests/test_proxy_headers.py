"""Forwarded headers count only from the configured reverse proxy (TRUSTED_PROXIES)."""

import ipaddress
from io import BytesIO

import pytest
from allauth.account.adapter import get_adapter
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIRequest

from localai_site.middleware import TrustedProxyHeaders

PROXY = "10.0.0.5"


def _request_as_the_app_sees_it(*, peer: str, **headers: str) -> ASGIRequest:
    seen = {}

    async def app(scope, receive, send):
        seen["request"] = ASGIRequest(scope, BytesIO())

    encoded = [(name.replace("_", "-").lower().encode(), value.encode()) for name, value in headers.items()]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/accounts/signup/",
        "query_string": b"",
        "headers": encoded,
        "client": (peer, 50123),
    }
    async_to_sync(TrustedProxyHeaders(app))(scope, None, None)
    return seen["request"]


def _address_rate_limits_count(request: ASGIRequest) -> str:
    return get_adapter(request).get_client_ip(request)


@pytest.fixture
def behind_proxy(settings):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network(PROXY)]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    return settings


def test_a_client_cannot_choose_the_address_its_rate_limit_counts(behind_proxy):
    request = _request_as_the_app_sees_it(
        peer="203.0.113.9", X_Forwarded_For="198.51.100.1", X_Forwarded_Proto="https"
    )
    assert _address_rate_limits_count(request) == "203.0.113.9"
    assert not request.is_secure()
    assert "HTTP_X_FORWARDED_FOR" not in request.META


def test_the_proxy_names_the_client_it_saw_and_the_client_cannot_prepend_one(behind_proxy):
    request = _request_as_the_app_sees_it(
        peer=PROXY, X_Forwarded_For="198.51.100.1, 203.0.113.9", X_Forwarded_Proto="https"
    )
    assert _address_rate_limits_count(request) == "203.0.113.9"
    assert request.is_secure()


def test_without_a_proxy_forwarded_headers_count_from_no_one(settings):
    settings.TRUSTED_PROXIES = []
    request = _request_as_the_app_sees_it(peer="127.0.0.1", X_Forwarded_For="198.51.100.1")
    assert _address_rate_limits_count(request) == "127.0.0.1"
