from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from .models import ConsentPurpose, ConsentSource
from .selectors import policy_significant_version
from .services import consent_set

# Pages a person may always reach, even before reviewing a changed policy: the policy
# itself, their privacy rights (download, delete), signing out, and assets.
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
        if request.method != "GET" or request.path.startswith(_ALWAYS_OPEN):
            return False
        if request.headers.get("HX-Request") or "text/html" not in request.headers.get("Accept", "text/html"):
            return False  # a background fetch cannot show the page; the next navigation will
        return request.user.policy_version_reviewed < policy_significant_version()
