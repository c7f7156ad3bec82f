from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import AbstractUser
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from localai_site.core.singleton import SingletonModel


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: object) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)


def avatar_path(user: User, filename: str) -> str:
    # A random name: the file's URL must not reveal who it belongs to.
    suffix = filename.rsplit(".", 1)[-1].lower()[:8] if "." in filename else "img"
    return f"avatars/{user.pk}/{secrets.token_hex(8)}.{suffix}"


SPEECH_RATE_MIN, SPEECH_RATE_MAX = 0.5, 2.0  # slower and faster than that is hard to follow


class Theme(models.TextChoices):
    """How the app looks to a person: ``system`` follows the device's light or dark setting."""

    SYSTEM = "system", "System"
    LIGHT = "light", "Light"
    DARK = "dark", "Dark"


class User(AbstractUser):
    """A person with an account. The email address is the login."""

    username = None
    first_name = None
    last_name = None
    email = models.EmailField("email address", unique=True)
    display_name = models.CharField(max_length=80, blank=True)
    avatar = models.ImageField(upload_to=avatar_path, blank=True)
    local_only = models.BooleanField(
        default=False, help_text="Never send anything of mine to a cloud provider."
    )
    default_model = models.CharField(max_length=200, blank=True)
    theme = models.CharField(max_length=6, choices=Theme.choices, default=Theme.SYSTEM)
    # Reading replies aloud happens in the browser (speechSynthesis): the voice is one of the
    # browser's, by name ("" is the browser's default).
    speech_voice = models.CharField(max_length=200, blank=True)
    speech_rate = models.FloatField(
        default=1.0, validators=[MinValueValidator(SPEECH_RATE_MIN), MaxValueValidator(SPEECH_RATE_MAX)]
    )
    default_persona = models.ForeignKey(
        "chat.Persona", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    processing_restricted = models.BooleanField(
        default=False,
        help_text="Restriction of processing: the person can read and export, nothing new is processed.",
    )
    # The current state of the person's consent records, kept here so that recording an
    # event does not read the whole history (accounts.services.consent_set keeps both in step).
    analytics_enabled = models.BooleanField(default=False, editable=False)
    policy_version_reviewed = models.PositiveIntegerField(default=0, editable=False)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    @property
    def name(self) -> str:
        return self.display_name or self.email.split("@", 1)[0]


class SignupMode(models.TextChoices):
    OPEN = "open", "Anyone may sign up"
    INVITE = "invite", "Only with an invitation"
    CLOSED = "closed", "Nobody may sign up"


class MfaRequirement(models.TextChoices):
    """Who must sign in with a second factor (an authenticator app or a passkey)."""

    NOBODY = "nobody", "Nobody (each person chooses)"
    STAFF = "staff", "Staff"
    EVERYONE = "everyone", "Everyone"


class InstanceSettings(SingletonModel):
    """Instance-wide switches admins change in the admin."""

    signup_mode = models.CharField(max_length=10, choices=SignupMode.choices, default=SignupMode.OPEN)
    cloud_enabled = models.BooleanField(
        default=True, help_text="Let people use cloud providers. Off: every reply is made on this instance."
    )
    api_enabled = models.BooleanField(
        "API enabled",
        default=True,
        help_text="Let people use the OpenAI-compatible API at /v1/ with their personal keys.",
    )
    mfa_required = models.CharField(
        "require two-factor sign-in",
        max_length=10,
        choices=MfaRequirement.choices,
        default=MfaRequirement.NOBODY,
        help_text="Who must set up an authenticator app or a passkey before using the instance; "
        "staff without one cannot open the admin.",
    )
    minimum_age = models.PositiveSmallIntegerField(
        choices=[(13, "13 years"), (16, "16 years")],
        default=16,
        help_text="People confirm at signup that they are at least this old.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "instance settings"
        verbose_name_plural = "instance settings"

    def __str__(self) -> str:
        return "Instance settings"

    @classmethod
    def defaults(cls) -> dict[str, object]:
        return {"signup_mode": settings.SIGNUP_MODE_DEFAULT, "mfa_required": settings.MFA_REQUIRED_DEFAULT}


def _invitation_token() -> str:
    return secrets.token_urlsafe(24)


class Invitation(models.Model):
    """Lets one person sign up while signups are invite-only."""

    email = models.EmailField(blank=True, help_text="Leave empty to let anyone with the link sign up.")
    token = models.CharField(max_length=64, unique=True, default=_invitation_token, editable=False)
    created_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    accepted_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invitation {self.email or self.token[:8]}"


def _download_token() -> str:
    return secrets.token_urlsafe(32)


class ExportStatus(models.TextChoices):
    QUEUED = "queued", "Waiting"
    BUILDING = "building", "Being built"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class ExportArchive(models.Model):
    """A ZIP of everything kept about a person, downloadable by them until it expires."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="exports")
    requested_by = models.ForeignKey(
        "accounts.User",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="An admin answering a request; empty when the person asked themselves.",
    )
    status = models.CharField(max_length=10, choices=ExportStatus.choices, default=ExportStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    file = models.FileField(upload_to="exports/", blank=True)
    size_bytes = models.BigIntegerField(default=0)
    token = models.CharField(max_length=64, unique=True, default=_download_token, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Export {self.pk} of {self.user_id}"

    @property
    def is_downloadable(self) -> bool:
        return self.status == ExportStatus.READY and self.expires_at > timezone.now()


class RequestKind(models.TextChoices):
    ACCESS = "access", "Access (GDPR art. 15)"
    PORTABILITY = "portability", "Portability (GDPR art. 20)"
    ERASURE = "erasure", "Erasure (GDPR art. 17)"
    RECTIFICATION = "rectification", "Rectification (GDPR art. 16)"
    RESTRICTION = "restriction", "Restriction of processing (GDPR art. 18)"
    OBJECTION = "objection", "Objection (GDPR art. 21)"
    CONSENT_WITHDRAWAL = "consent_withdrawal", "Consent withdrawal (GDPR art. 7)"
    CCPA_KNOW = "ccpa_know", "Right to know (CCPA)"
    CCPA_DELETE = "ccpa_delete", "Right to delete (CCPA)"
    CCPA_OPT_OUT = "ccpa_opt_out", "Right to opt out (CCPA)"


class Regime(models.TextChoices):
    GDPR = "gdpr", "GDPR"
    CCPA = "ccpa", "CCPA"


class RequestStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    VERIFYING = "verifying", "Verifying identity"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    REFUSED = "refused", "Refused"


class DataSubjectRequest(models.Model):
    """A request about a person's data, and how it was answered.

    The record outlives an erasure it answers: the link to the person and their address
    give way to a pseudonymous reference, and the outcome holds counts, never content.
    """

    kind = models.CharField(max_length=20, choices=RequestKind.choices)
    regime = models.CharField(max_length=4, choices=Regime.choices, default=Regime.GDPR)
    subject = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="data_requests"
    )
    subject_email = models.EmailField(blank=True, help_text="As given in the request.")
    subject_reference = models.CharField(max_length=64, blank=True, editable=False)
    received_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField(editable=False)
    extended_until = models.DateTimeField(null=True, blank=True)
    extension_reason = models.CharField(max_length=300, blank=True)
    verification = models.CharField(
        max_length=300, blank=True, help_text="How the requester's identity was verified."
    )
    status = models.CharField(max_length=12, choices=RequestStatus.choices, default=RequestStatus.RECEIVED)
    handled_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    outcome = models.JSONField(default=dict, blank=True, help_text="Counts per category; never content.")
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_at"]
        permissions = [("handle_data_requests", "Can export, erase and restrict people's data")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} · {self.subject_email or self.subject_reference}"

    @property
    def deadline(self):
        return self.extended_until or self.due_at


class ConsentPurpose(models.TextChoices):
    ANALYTICS = "analytics", "Usage analytics"
    PRIVACY_POLICY = "privacy_policy", "Privacy policy read"
    MINIMUM_AGE = "minimum_age", "Minimum age confirmed"


class ConsentSource(models.TextChoices):
    SIGNUP = "signup", "At signup"
    SETTINGS = "settings", "In privacy settings"
    POLICY_REVIEW = "policy_review", "When reviewing a new policy"
    GPC = "gpc", "Global Privacy Control signal from the browser"
    DATA_REQUEST = "data_request", "By an admin answering a request"


class Consent(models.Model):
    """One decision about one purpose: records are added, never changed.

    ``version`` is the privacy policy version in force (``policy-3``, or ``default``),
    or for the age confirmation the age confirmed.
    """

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="consents")
    purpose = models.CharField(max_length=20, choices=ConsentPurpose.choices)
    version = models.CharField(max_length=32)
    given = models.BooleanField()
    source = models.CharField(max_length=20, choices=ConsentSource.choices)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        verb = "given" if self.given else "withdrawn"
        return f"{self.get_purpose_display()} {verb} ({self.version})"


class PolicyVersion(models.Model):
    """A published version of this instance's privacy policy. Published versions never change."""

    version = models.PositiveIntegerField(unique=True, editable=False)
    body = models.TextField(help_text="Markdown.")
    summary = models.CharField(
        max_length=300,
        blank=True,
        help_text="What changed, in a sentence people see when asked to review it.",
    )
    significant = models.BooleanField(
        default=False, help_text="Ask everyone to review this version on their next visit."
    )
    published_at = models.DateTimeField(default=timezone.now, editable=False)
    published_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    class Meta:
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"Privacy policy v{self.version}"

    @property
    def label(self) -> str:
        return f"policy-{self.version}"


class UsageEventName(models.TextChoices):
    SIGNED_IN = "signed_in", "Signed in"
    CONVERSATION_CREATED = "conversation_created", "Conversation started"
    MESSAGE_SENT = "message_sent", "Message sent"
    REPLY_FINISHED = "reply_finished", "Reply finished"
    EXPORT_REQUESTED = "export_requested", "Data download requested"
    MODEL_DOWNLOADED = "model_downloaded", "Model downloaded"


class UsageEvent(models.Model):
    """A feature used by someone who agreed to analytics. Never any content.

    Raw events live until the day is over: the daily roll-up counts them and deletes them.
    """

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="usage_events")
    name = models.CharField(max_length=30, choices=UsageEventName.choices)
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=60, blank=True)  # "local" or the cloud provider's slug
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_name_display()} at {self.created_at:%Y-%m-%d %H:%M}"


class UsageDaily(models.Model):
    """Counts of one day's events; nobody can be told apart in them."""

    day = models.DateField()
    name = models.CharField(max_length=30, choices=UsageEventName.choices)
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=60, blank=True)
    events = models.PositiveIntegerField(default=0)
    users = models.PositiveIntegerField(default=0)
    duration_ms_total = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["day", "name", "model", "provider"], name="one_usage_row_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.day}: {self.events} × {self.get_name_display()}"


class ActiveUsersDaily(models.Model):
    day = models.DateField(unique=True)
    users = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        verbose_name_plural = "active users per day"

    def __str__(self) -> str:
        return f"{self.day}: {self.users} active"


class CrashSource(models.TextChoices):
    WEB = "web", "Web request"
    TASK = "task", "Background task"
    OTHER = "other", "Other"


class CrashReport(models.Model):
    """An error stored on this instance, scrubbed of message content, addresses and secrets.

    One row per failure (its fingerprint): the text is of its latest occurrence, ``created_at``
    the first, ``count`` how many were logged.
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    count = models.PositiveIntegerField(default=1)
    source = models.CharField(max_length=10, choices=CrashSource.choices)
    logger = models.CharField(max_length=100)
    exception_type = models.CharField(max_length=200)
    message = models.TextField()
    traceback = models.TextField()
    fingerprint = models.CharField(max_length=40, unique=True)
    request_method = models.CharField(max_length=10, blank=True)
    request_path = models.CharField(max_length=300, blank=True)
    release = models.CharField(max_length=40)

    class Meta:
        ordering = ["-last_seen_at"]

    def __str__(self) -> str:
        return f"{self.exception_type}: {self.message[:80]}"


class ApiKeyScope(models.TextChoices):
    CHAT = "chat", "Chat and list models"
    MODELS = "models", "List models only (read-only)"


class ApiKey(models.Model):
    """A personal key for the OpenAI-compatible API. The key itself is shown once, when it is
    made; the row keeps a keyed hash of it (``accounts.services.api_key_digest``) and the
    prefix that names it in lists."""

    PREFIX_CHARS = 12  # "lai_" and 8 more: enough to tell keys apart, far too few to use

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=PREFIX_CHARS, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    scope = models.CharField(max_length=10, choices=ApiKeyScope.choices, default=ApiKeyScope.CHAT)
    local_only = models.BooleanField(
        default=False, help_text="Replies through this key are made on this instance, never in the cloud."
    )
    keep_history = models.BooleanField(
        default=True, help_text="Chats through this key appear in the history; off: deleted once answered."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    @property
    def can_chat(self) -> bool:
        return self.scope == ApiKeyScope.CHAT


class ErasureRecord(models.Model):
    """That an account was erased, and when, without saying whose: the subject is a keyed
    hash (``accounts.erasures``). A restore erases again every account listed here."""

    subject = models.CharField(max_length=64, unique=True, editable=False)
    erased_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return f"erasure {self.subject[:12]}… at {self.erased_at:%Y-%m-%d %H:%M}"
