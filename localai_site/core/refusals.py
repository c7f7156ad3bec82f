"""The one way a service says no.

A ``Refusal`` carries a stable ``code`` (for scripts and tests) and a ``message`` written for
the person who asked, shown as it is. Each door maps it in one place: a view turns it into
the page's error message (``refusal_message``), a socket into an error frame, an admin
action into an admin message. Anything else a service raises is a bug, logged as one.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest


class Refusal(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def refusal_message(request: HttpRequest, refusal: Refusal) -> None:
    """A refusal as the error message of the next page the person sees."""
    messages.error(request, refusal.message)
