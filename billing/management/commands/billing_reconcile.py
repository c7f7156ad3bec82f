from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing.webhooks import subscriptions_reconcile


class Command(BaseCommand):
    help = (
        "Read subscriptions again from Stripe (those not ended, or all with --all), after applying "
        "webhook events that are still pending."
    )

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="Also subscriptions that ended.")

    def handle(self, *args, **options):
        if not settings.BILLING_ENABLED:
            raise CommandError("Billing is off (no STRIPE_SECRET_KEY): there is nothing to reconcile.")
        read, failed = subscriptions_reconcile(everyone=options["all"])
        self.stdout.write(f"Read {read} subscriptions from Stripe; {failed} could not be read or applied.")
        if failed:
            raise CommandError("Stripe did not answer for some: run it again later.")
