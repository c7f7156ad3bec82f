from django.db import transaction

from localai_site.core.sockets import user_sockets_recheck

from .analytics import usage_record
from .models import UsageEventName

# The fields whose change can end a person's sessions (a new password, a deactivation).
_SESSION_FIELDS = {"password", "is_active"}


def sign_in_recorded(sender, request, user, **kwargs) -> None:
    usage_record(user=user, name=UsageEventName.SIGNED_IN)


def sockets_closed_on_logout(sender, request, user, **kwargs) -> None:
    # Sent before the session is flushed: the sockets of this session close without a check.
    if user is not None:
        user_sockets_recheck(user_id=user.pk, ended_session_key=request.session.session_key)


def sockets_rechecked_on_account_change(
    sender, instance, created=False, update_fields=None, **kwargs
) -> None:
    """A new password, a deactivation or a deleted account closes the person's open sockets
    whose session it ended (their next frame would find out too)."""
    if created or (update_fields is not None and not _SESSION_FIELDS & set(update_fields)):
        return
    user_id = instance.pk
    transaction.on_commit(lambda: user_sockets_recheck(user_id=user_id))
