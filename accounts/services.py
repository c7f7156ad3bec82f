from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.timesince import timeuntil

from localai_site.core.files import files_delete_after_commit
from localai_site.core.privacy import pseudonym, user_erase, user_export
from localai_site.core.queues import Queue
from localai_site.core.refusals import Refusal
from localai_site.core.tasks import task_enqueue

from .analytics import usage_record
from .models import (
    Consent,
    ConsentPurpose,
    ConsentSource,
    DataSubjectRequest,
    ExportArchive,
    ExportStatus,
    InstanceSettings,
    PolicyVersion,
    Regime,
    RequestKind,
    RequestStatus,
    UsageEventName,
    User,
)
from .selectors import (
    instance_settings_get,
    invitation_usable,
    policy_current,
    policy_label,
)
from .setup_token import setup_token_discard, setup_token_matches


@transaction.atomic
def user_signup_complete(
    *, user: User, invitation_token: str | None = None, setup_token: str | None = None
) -> User:
    """Runs once per new account, in the transaction that created it: uses up the invitation
    it came with, and makes it the admin when it came with the setup token while the instance
    has none. Raises a Refusal (the caller rolls the account back) when another signup used
    either a moment before."""
    if setup_token is not None:
        # Locked: two first signups at once must leave exactly one admin.
        InstanceSettings.load_locked()
        if User.objects.filter(is_superuser=True).exclude(pk=user.pk).exists():
            raise Refusal(
                "admin_exists", "This instance has its admin now: sign in, or ask them for an account."
            )
        if not setup_token_matches(setup_token):
            raise Refusal(
                "setup_token_wrong", "This setup link is not valid; use the one the server printed."
            )
        user.is_staff = True
        user.is_superuser = True
        user.save(update_fields=["is_staff", "is_superuser"])
        transaction.on_commit(setup_token_discard)
    if invitation_token is not None:
        # A conditional update: of two signups with one invitation, one account is made.
        claimed = (
            invitation_usable()
            .filter(token=invitation_token)
            .filter(Q(email="") | Q(email__iexact=user.email))
            .update(accepted_by=user, accepted_at=timezone.now())
        )
        if not claimed:
            raise Refusal("invitation_used", "This invitation has already been used; ask for a new one.")
    return user


# --- Consent and the privacy policy -----------------------------------------------------


@transaction.atomic
def consent_set(*, user: User, purpose: ConsentPurpose, given: bool, source: ConsentSource) -> Consent:
    """Record a decision; for analytics also switch recording on or off at once."""
    version = policy_label(policy_current())
    if purpose == ConsentPurpose.MINIMUM_AGE:
        version = str(instance_settings_get().minimum_age)
    record = Consent.objects.create(user=user, purpose=purpose, version=version, given=given, source=source)
    if purpose == ConsentPurpose.ANALYTICS and user.analytics_enabled != given:
        user.analytics_enabled = given
        User.objects.filter(pk=user.pk).update(analytics_enabled=given)
    return record


@transaction.atomic
def signup_consents_record(*, user: User, analytics: bool) -> None:
    """What a person agreed to on the signup form; they have just been shown the policy."""
    consent_set(user=user, purpose=ConsentPurpose.MINIMUM_AGE, given=True, source=ConsentSource.SIGNUP)
    policy_reviewed(user=user, source=ConsentSource.SIGNUP)
    if analytics:
        consent_set(user=user, purpose=ConsentPurpose.ANALYTICS, given=True, source=ConsentSource.SIGNUP)


@transaction.atomic
def policy_reviewed(*, user: User, source: ConsentSource = ConsentSource.POLICY_REVIEW) -> None:
    """The person read the version in force; they are not asked about it again."""
    current = policy_current()
    consent_set(user=user, purpose=ConsentPurpose.PRIVACY_POLICY, given=True, source=source)
    user.policy_version_reviewed = current.version if current else 0
    User.objects.filter(pk=user.pk).update(policy_version_reviewed=user.policy_version_reviewed)


@transaction.atomic
def policy_publish(*, body: str, summary: str, significant: bool, published_by: User | None) -> PolicyVersion:
    """Publish the next version; a significant one is put before everyone on their next visit."""
    latest = PolicyVersion.objects.select_for_update().order_by("-version").first()
    return PolicyVersion.objects.create(
        version=(latest.version if latest else 0) + 1,
        body=body,
        summary=summary,
        significant=significant,
        published_by=published_by,
    )


# --- Data-subject rights (export and erasure walk the registry: localai_site.core.privacy) ---


# An export still queued or building after this long died with its worker: it no longer
# stands in the way of a new one (the daily limit still counts it).
EXPORT_GIVEN_UP_AFTER = timedelta(hours=1)
EXPORT_LIMIT_WINDOW = timedelta(days=1)


def _export_limits_check(*, user: User) -> None:
    """One export of theirs in flight at a time, and ``EXPORTS_PER_DAY`` in 24 hours: each is
    a ZIP of everything they have, built by a worker and kept for days."""
    now = timezone.now()
    exports = ExportArchive.objects.filter(user=user)
    in_flight = exports.filter(
        status__in=[ExportStatus.QUEUED, ExportStatus.BUILDING], created_at__gt=now - EXPORT_GIVEN_UP_AFTER
    )
    if in_flight.exists():
        raise Refusal(
            "export_in_progress", "Your download is still being prepared; ask again once it is ready."
        )
    recent = exports.filter(requested_by=None, created_at__gt=now - EXPORT_LIMIT_WINDOW)
    per_day = settings.EXPORTS_PER_DAY
    if recent.count() >= per_day:
        oldest = recent.order_by("created_at").values_list("created_at", flat=True)[0]
        raise Refusal(
            "too_many_exports",
            f"You can prepare {per_day} downloads a day; "
            f"you can ask for another in {timeuntil(oldest + EXPORT_LIMIT_WINDOW, now)}.",
        )


@transaction.atomic
def export_request(*, user: User, requested_by: User | None = None) -> ExportArchive:
    """Start building an export in the background; it can be downloaded for 7 days. People
    asking for their own are limited; an admin answering a request (``requested_by``) is not."""
    if requested_by is None:
        # Locked: two tabs asking at once must not both pass the limits.
        User.objects.select_for_update().get(pk=user.pk)
        _export_limits_check(user=user)
    kept_for = timedelta(days=settings.RETENTION_DAYS["export_archives"])
    archive = ExportArchive.objects.create(
        user=user, requested_by=requested_by, expires_at=timezone.now() + kept_for
    )
    if requested_by is None:
        usage_record(user=user, name=UsageEventName.EXPORT_REQUESTED)

    transaction.on_commit(lambda: task_enqueue("accounts.build_export", archive.pk, queue=Queue.EXPORTS))
    return archive


def export_build(*, archive_id: int) -> None:
    archive = ExportArchive.objects.select_related("user").get(pk=archive_id)
    name = f"exports/{archive.token}.zip"
    # Named on the row from the start: erasure and retention delete a ZIP still being written.
    ExportArchive.objects.filter(pk=archive.pk).update(status=ExportStatus.BUILDING, file=name)
    target = Path(settings.MEDIA_ROOT) / name
    target.parent.mkdir(parents=True, exist_ok=True)

    def progress(percent: int) -> None:
        ExportArchive.objects.filter(pk=archive.pk).update(progress=percent)

    try:
        user_export(user=archive.user, destination=target, progress=progress)
    except Exception as exc:
        target.unlink(missing_ok=True)
        ExportArchive.objects.filter(pk=archive.pk).update(
            status=ExportStatus.FAILED, file="", error=str(exc)[:300]
        )
        raise
    # The account may have been erased while this was written: its row is gone, and its file
    # may be too (deleted from under the writer).
    size = target.stat().st_size if target.exists() else 0
    if not ExportArchive.objects.filter(pk=archive.pk).update(
        status=ExportStatus.READY, progress=100, size_bytes=size
    ):
        target.unlink(missing_ok=True)


def exports_purge(*, created_before: datetime) -> int:
    """Delete archives that expired or are older than the retention period, files first."""
    expired = list(
        ExportArchive.objects.filter(Q(expires_at__lte=timezone.now()) | Q(created_at__lt=created_before))
    )
    files_delete_after_commit(archive.file for archive in expired)
    ExportArchive.objects.filter(pk__in=[a.pk for a in expired]).delete()
    return len(expired)


def user_restrict(*, user: User, restricted: bool) -> User:
    user.processing_restricted = restricted
    user.save(update_fields=["processing_restricted"])
    return user


def user_active_set(*, user: User, active: bool, actor: User) -> User:
    """Let ``user`` sign in again, or not: a deactivated person's sessions, sockets and API
    keys stop working at once (``accounts.receivers``); nothing they keep is deleted."""
    if not active and user.pk == actor.pk:
        raise Refusal("own_account", "You cannot deactivate your own account.")
    if not active and user.is_superuser and not actor.is_superuser:
        raise Refusal("superuser", "Only a superuser can deactivate a superuser.")
    user.is_active = active
    user.save(update_fields=["is_active"])
    return user


def data_request_save(*, request: DataSubjectRequest) -> DataSubjectRequest:
    """Fill in the deadline the law sets and the pseudonymous reference, then save."""
    subject = request.subject
    if subject is not None and not request.subject_reference:
        request.subject_reference = pseudonym(subject)
    if subject is not None and not request.subject_email:
        request.subject_email = subject.email
    received = request.received_at
    if request.regime == Regime.CCPA:
        request.due_at = received + timedelta(days=45)
    else:
        # One month: the same day of the next month, or its last day if that is shorter.
        year, month = (received.year + 1, 1) if received.month == 12 else (received.year, received.month + 1)
        request.due_at = received.replace(
            year=year, month=month, day=min(received.day, _days_in(year, month))
        )
    request.save()
    return request


def _days_in(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


AUTOMATIC_KINDS: dict[str, str] = {
    RequestKind.ACCESS: "export",
    RequestKind.PORTABILITY: "export",
    RequestKind.CCPA_KNOW: "export",
    RequestKind.ERASURE: "erase",
    RequestKind.CCPA_DELETE: "erase",
    RequestKind.RESTRICTION: "restrict",
    RequestKind.CONSENT_WITHDRAWAL: "withdraw",
    RequestKind.CCPA_OPT_OUT: "withdraw",  # nothing is sold; analytics are the only optional use
}


def data_request_carry_out(*, request: DataSubjectRequest, actor: User) -> DataSubjectRequest:
    """Do what the request asks, record who did it and the outcome (counts, never content)."""
    action = AUTOMATIC_KINDS.get(request.kind)
    if action is None:
        raise Refusal(
            "by_hand", f"A {request.get_kind_display()} request is handled by hand; then mark it completed."
        )
    user = request.subject
    if user is None:
        raise Refusal("no_subject", "Link the request to an account first (after verifying the requester).")
    outcome: dict[str, object]
    if action == "export":
        archive = export_request(user=user, requested_by=actor)
        outcome = {"export_archive": archive.pk}
    elif action == "erase":
        outcome = {"erased": user_erase(user=user)}
        request.refresh_from_db()  # erasure pseudonymised this very record
    elif action == "withdraw":
        consent_set(
            user=user, purpose=ConsentPurpose.ANALYTICS, given=False, source=ConsentSource.DATA_REQUEST
        )
        outcome = {"analytics_consent": "withdrawn"}
    else:
        user_restrict(user=user, restricted=True)
        outcome = {"restricted": True}
    request.outcome = outcome
    request.handled_by = actor
    request.status = RequestStatus.COMPLETED
    request.completed_at = timezone.now()
    request.save(update_fields=["outcome", "handled_by", "status", "completed_at"])
    return request
