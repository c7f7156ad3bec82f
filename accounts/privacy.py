from allauth.account.models import EmailAddress, EmailConfirmation
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.contrib.admin.models import LogEntry

from localai_site.core.privacy import (
    Erase,
    PersonalData,
    pseudonym,
    register,
    register_on_erase,
    register_section,
)

from .erasures import erasure_record
from .models import (
    ApiKey,
    Consent,
    DataSubjectRequest,
    ExportArchive,
    Invitation,
    PolicyVersion,
    UsageEvent,
    User,
)
from .retention import retention_table

register(
    PersonalData(
        User,
        owner="",
        purpose="Your account: signing in and showing your name.",
        category="profile",
        fields=(
            "email",
            "display_name",
            "date_joined",
            "last_login",
            "local_only",
            "default_model",
            "theme",
            "speech_voice",
            "speech_rate",
            "processing_restricted",
        ),  # fmt: skip
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
        Authenticator,
        owner="user",
        purpose="Your second factors for signing in: an authenticator app, recovery codes, passkeys.",
        category="sign_in_factors",
        # That one exists, never its secret, recovery codes or public key.
        fields=("type", "created_at", "last_used_at"),
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
        purpose="When you changed something in the admin, and how (added, changed, deleted).",
        category="admin_actions",
        # Not what it was about: an entry's text names other people and what they wrote.
        fields=("action_time", "action_flag"),
    ),
    PersonalData(
        ExportArchive,
        owner="user",
        purpose="Copies of your data you asked for; deleted after 7 days.",
        category=None,
        files=("file",),
    ),
    PersonalData(
        ExportArchive,
        owner="requested_by",
        purpose="Exports you made as an admin; they belong to the people exported.",
        category=None,
        erase=Erase.UNLINK,
    ),
    PersonalData(
        DataSubjectRequest,
        owner="subject",
        purpose="Requests about your data and how they were answered; kept as proof, without your name.",
        category="data_requests",
        fields=("kind", "regime", "received_at", "status", "completed_at"),
        erase=Erase.PSEUDONYMISE,
        # The free-text notes go too: they say how the person proved who they are.
        pseudonymise={
            "subject": None,
            "subject_email": "",
            "subject_reference": pseudonym,
            "verification": "",
            "extension_reason": "",
        },
    ),
    PersonalData(
        DataSubjectRequest,
        owner="handled_by",
        purpose="Requests you handled as an admin.",
        category=None,
        erase=Erase.UNLINK,
    ),
    PersonalData(
        ApiKey,
        owner="user",
        purpose="Your keys for the API: which tool may use it, and from where it was last used.",
        category="api_keys",
        # Never the digest: it is what the key is checked against.
        fields=(
            "name",
            "prefix",
            "scope",
            "local_only",
            "keep_history",
            "created_at",
            "expires_at",
            "last_used_at",
            "last_used_ip",
            "revoked_at",
        ),  # fmt: skip
    ),
    PersonalData(
        Consent,
        owner="user",
        purpose="Proof of what you agreed to or withdrew, and when.",
        category="consents",
        fields=("purpose", "given", "version", "source", "created_at"),
    ),
    PersonalData(
        UsageEvent,
        owner="user",
        purpose="Usage analytics you agreed to; counted into daily totals after a day, then deleted.",
        category="analytics_events",
        fields=("name", "model", "provider", "duration_ms", "created_at"),
    ),
    PersonalData(
        PolicyVersion,
        owner="published_by",
        purpose="Privacy policy versions you published as an admin.",
        category=None,
        erase=Erase.UNLINK,
    ),
)

register_section("retention", lambda user: retention_table())
# Kept apart from the database too, so that a restore of an older backup erases them again.
register_on_erase(erasure_record)
