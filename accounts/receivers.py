from .analytics import usage_record
from .models import UsageEventName


def sign_in_recorded(sender, request, user, **kwargs) -> None:
    usage_record(user=user, name=UsageEventName.SIGNED_IN)
