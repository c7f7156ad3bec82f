"""The page listing the Google or Apple accounts a person signs in with (allauth's
``/accounts/3rdparty/``): its form, not the sign-in flow itself."""

from __future__ import annotations

from allauth.socialaccount.forms import DisconnectForm
from django.conf import settings


class ConnectionsForm(DisconnectForm):
    """Only accounts of the providers configured now: one whose credentials were removed has
    no provider left to show it with, and would break the whole page."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.accounts = self.accounts.filter(provider__in=list(settings.SOCIALACCOUNT_PROVIDERS))
        self.fields["account"].queryset = self.accounts
