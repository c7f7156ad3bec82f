from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from .mfa import mfa_missing
from .models import ConsentPurpose, ConsentSource
from .selectors import policy_significant_version
from .services import consent_set

# Pages a person may always reach, even before reviewing a changed policy: the policy
# itself, their privacy rights (download, delete), signing out, and assets (paths below the
# sub-path the app may be served under).
_ALWAYS_OPEN = (
    "/privacy/",
    "/settings/privacy/",
    "/accounts/logout/",
    "/static/",
    "/media/",
    "/admin/jsi18n/",
)


class PrivacyChoicesMiddleware:
    """Honours Global Privacy Control and asks for a review of a significantly changed policy.

    ``Sec-GPC: 1`` is an opt-out of analytics: a signed-in person's agreement is withdrawn
    (and recorded as withdrawn by the browser's signal); their events stop at once.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.gpc = request.headers.get("Sec-GPC", "").strip() == "1"
        user = request.user
        if user.is_authenticated:
            if request.gpc and user.analytics_enabled:
                consent_set(
                    user=user, purpose=ConsentPurpose.ANALYTICS, given=False, source=ConsentSource.GPC
                )
            if self._review_due(request):
                query = urlencode({"next": request.get_full_path()})
                return redirect(f"{reverse('policy:review')}?{query}")
        return self.get_response(request)

    @staticmethod
    def _review_due(request: HttpRequest) -> bool:
        if request.method != "GET" or request.path_info.startswith(_ALWAYS_OPEN):
            return False
        if request.headers.get("HX-Request") or "text/html" not in request.headers.get("Accept", "text/html"):
            return False  # a background fetch cannot show the page; the next navigation will
        return request.user.policy_version_reviewed < policy_significant_version()


# What a person who must set up a second factor may still open: the setup itself (and the
# password check allauth asks for before it), signing out, the policy and their privacy rights
# (download, delete: never held back by a setting of the instance), and assets.
_MFA_SETUP_OPEN = (
    "/accounts/2fa/",
    "/accounts/reauthenticate/",
    "/accounts/logout/",
    "/privacy/",
    "/settings/privacy/",
    "/static/",
    "/media/",
)


class MfaRequiredMiddleware:
    """Sends a signed-in person the instance requires a second factor of (Admin → Instance
    settings) to set one up until they have: the admin included, which so opens only for staff
    who have one."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(_MFA_SETUP_OPEN) or not mfa_missing(request.user):
            return self.get_response(request)
        if request.path_info.startswith("/admin/"):
            messages.warning(
                request, "The admin opens only for staff with two-factor sign-in: set it up here first."
            )
        else:
            messages.warning(request, "Two-factor sign-in is required for your account: set it up to go on.")
        return redirect("mfa_index")


class MfaRequiredSockets:
    """The sockets' side of ``MfaRequiredMiddleware``: a person who must set up a second factor
    first opens no socket (they are taken as signed out, so the consumers close with 4401).
    Without it, a password alone would still stream chats to a client that skips the pages.
    Goes inside ``localai_site.core.sockets.socket_auth``, which has put the user in the scope."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        from django.contrib.auth.models import AnonymousUser

        from localai_site.core.sockets import database_work

        user = scope.get("user")
        if user is not None and await database_work(mfa_missing)(user):
            scope = {**scope, "user": AnonymousUser()}
        return await self.app(scope, receive, send)
