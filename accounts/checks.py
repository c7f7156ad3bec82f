from django.conf import settings
from django.core.checks import Error

from .retention import MAX_CRASH_REPORT_DAYS


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
