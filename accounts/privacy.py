from allauth.account.models import EmailAddress, EmailConfirmation
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.contrib.admin.models import LogEntry

from localai_site.privacy import Erase, PersonalData, register

from .models import Invitation, User

register(
    PersonalData(
        User,
        owner="",
        purpose="Your account: signing in and showing your name.",
        category="profile",
        fields=("email", "display_name", "date_joined", "last_login", "local_only", "default_model"),
        files=("avatar",),
    ),
    PersonalData(
        EmailAddress,
        owner="user",
        purpose="Signing in and account mail.",
        category="email_addresses",
        fields=("email", "verified", "primary"),
    ),
    PersonalData(
        EmailConfirmation, owner="email_address__user", purpose="Confirming an address.", category=None
    ),
    PersonalData(
        SocialAccount,
        owner="user",
        purpose="Signing in with Google or Apple.",
        category="social_accounts",
        fields=("provider", "uid", "date_joined", "last_login"),
    ),
    PersonalData(
        SocialToken, owner="account__user", purpose="Signing in with Google or Apple.", category=None
    ),
    PersonalData(
        Invitation,
        owner="accepted_by",
        purpose="The invitation you signed up with.",
        category="invitations",
        fields=("email", "created_at", "accepted_at"),
    ),
    PersonalData(
        Invitation,
        owner="created_by",
        purpose="Invitations you sent as an admin; they belong to the people invited.",
        category=None,
        erase=Erase.UNLINK,
    ),
    PersonalData(
        LogEntry,
        owner="user",
        purpose="What you changed in the admin.",
        category="admin_actions",
        fields=("action_time", "object_repr", "change_message"),
    ),
)
