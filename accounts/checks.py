"""System checks: what this instance promises (always), and what an instance reachable from
other machines should not run with (``localai check --deploy``, and ``localai serve`` on a
non-loopback address). Each deploy warning's hint names the environment variable that fixes
it; Django's own deploy checks (HSTS, HTTPS redirect, DEBUG, SECRET_KEY…) name settings
read from variables of the same names."""

from django.conf import settings
from django.core.checks import Error, Warning
from django.db import DatabaseError

from .models import InstanceSettings, MfaRequirement
from .retention import MAX_CRASH_REPORT_DAYS

CONSOLE_EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"


def retention_within_promises(app_configs=None, **kwargs) -> list[Error]:
    days = settings.RETENTION_DAYS["crash_reports"]
    if days > MAX_CRASH_REPORT_DAYS:
        return [
            Error(
                f"RETENTION_CRASH_REPORTS_DAYS is {days}; crash reports may be kept {MAX_CRASH_REPORT_DAYS} "
                "days at most.",
                hint=f"Set RETENTION_CRASH_REPORTS_DAYS to {MAX_CRASH_REPORT_DAYS} or less.",
                id="localai.E001",
            )
        ]
    return []


def cookies_https_only(app_configs=None, **kwargs) -> list[Warning]:
    # Replaces Django's security.W012 and W016 (silenced in settings), whose hints name the
    # two settings rather than the one variable that sets both.
    if settings.SESSION_COOKIE_SECURE and settings.CSRF_COOKIE_SECURE:
        return []
    return [
        Warning(
            "Session and CSRF cookies are also sent over plain HTTP, where anyone on the way can "
            "read a signed-in session.",
            hint="Serve the site over HTTPS and set SECURE_COOKIES=1.",
            id="localai.W001",
        )
    ]


def mail_is_sent(app_configs=None, **kwargs) -> list[Warning]:
    if settings.EMAIL_BACKEND != CONSOLE_EMAIL_BACKEND:
        return []
    return [
        Warning(
            "Mail (password resets, address verification) is printed to the log instead of sent.",
            hint="Set EMAIL_HOST (and EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD) to an SMTP server.",
            id="localai.W002",
        )
    ]


def email_addresses_verified(app_configs=None, **kwargs) -> list[Warning]:
    if settings.ACCOUNT_EMAIL_VERIFICATION == "mandatory":
        return []
    return [
        Warning(
            f"ACCOUNT_EMAIL_VERIFICATION is {settings.ACCOUNT_EMAIL_VERIFICATION!r}: anyone can sign up "
            "with someone else's address.",
            hint="Set ACCOUNT_EMAIL_VERIFICATION=mandatory (with EMAIL_HOST, so the mail arrives).",
            id="localai.W003",
        )
    ]


def staff_second_factor(app_configs=None, **kwargs) -> list[Warning]:
    try:
        requirement = InstanceSettings.objects.values_list("mfa_required", flat=True).first()
    except DatabaseError:  # not migrated yet: the row will be made with the default
        requirement = None
    if (requirement or settings.MFA_REQUIRED_DEFAULT) != MfaRequirement.NOBODY:
        return []
    return [
        Warning(
            "Staff may sign in without a second factor: a staff password is all it takes to reach "
            "everyone's data in the admin.",
            hint="Require two-factor sign-in for staff: Admin → Instance settings, or MFA_REQUIRED=staff "
            "before the instance first starts.",
            id="localai.W004",
        )
    ]


DEPLOY_CHECKS = (cookies_https_only, mail_is_sent, email_addresses_verified, staff_second_factor)
