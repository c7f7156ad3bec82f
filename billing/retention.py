"""Billing's rows of the retention table (``settings.RETENTION_DAYS``), registered with
``accounts.retention`` when the app is ready."""

from __future__ import annotations

from datetime import datetime

from .models import Invoice, StripeEvent


def invoices_purge(cutoff: datetime) -> int:
    """Invoices older than tax law asks to keep them."""
    return Invoice.objects.filter(created_at__lt=cutoff).delete()[0]


def stripe_events_purge(cutoff: datetime) -> int:
    """Ids of events applied before ``cutoff``: Stripe retries one for three days only."""
    return StripeEvent.objects.filter(received_at__lt=cutoff, processed_at__isnull=False).delete()[0]
