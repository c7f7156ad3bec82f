"""Plans, who is on which, what they paid, what they used, and the Stripe events seen.

No card data is ever kept: Stripe holds it; we keep its ids and what an invoice says."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Plan(models.Model):
    """What a person may do; admins edit the plans (Free, AI Chat Pro, AI Art Pro at first).
    An empty limit is no limit."""

    name = models.CharField(max_length=80, unique=True)
    slug = models.SlugField(unique=True)
    description = models.TextField(blank=True)
    price_label = models.CharField(
        max_length=80, blank=True, help_text="The price as the plan page shows it, e.g. “€9 a month”."
    )
    stripe_price_id = models.CharField(
        max_length=100,
        blank=True,
        help_text="The Stripe price (price_…) Checkout sells; empty: not for sale, admins assign it.",
    )
    is_default = models.BooleanField(
        default=False, help_text="The plan of everyone who has no other (one plan at most)."
    )
    position = models.PositiveSmallIntegerField(
        default=0, help_text="Order on the plan page, smallest first; a refusal offers the next ones."
    )
    cloud_messages_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="Messages to cloud models per calendar day; empty: unlimited."
    )
    image_generations_per_month = models.PositiveIntegerField(
        null=True, blank=True, help_text="Images per billing period (or calendar month); empty: unlimited."
    )
    max_upload_mb = models.PositiveIntegerField(
        null=True, blank=True, help_text="The largest upload; empty: the instance's limit (UPLOAD_MAX_MB)."
    )
    cloud_models = models.TextField(
        blank=True,
        help_text="Cloud models of this plan, one id a line (cloud:<provider>/<model>); empty: all of them.",
    )
    local_limited = models.BooleanField(
        default=False,
        help_text="Count messages to local models against the daily limit too "
        "(they cost nothing per message).",
    )

    class Meta:
        ordering = ["position", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_plan"
            ),
            models.UniqueConstraint(
                fields=["stripe_price_id"], condition=~Q(stripe_price_id=""), name="one_plan_per_stripe_price"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def cloud_model_ids(self) -> frozenset[str]:
        return frozenset(line.strip() for line in self.cloud_models.splitlines() if line.strip())


class SubscriptionStatus(models.TextChoices):
    """Stripe's subscription statuses, and ours for a plan without one."""

    NONE = "none", "No subscription"
    ACTIVE = "active", "Active"
    TRIALING = "trialing", "Trial"
    PAST_DUE = "past_due", "Payment failed, retrying"
    UNPAID = "unpaid", "Unpaid"
    INCOMPLETE = "incomplete", "Waiting for the first payment"
    INCOMPLETE_EXPIRED = "incomplete_expired", "First payment never made"
    CANCELED = "canceled", "Cancelled"
    PAUSED = "paused", "Paused"


# A subscription in these states gives its plan: a failed payment keeps it while Stripe retries.
ENTITLED_STATUSES = frozenset(
    {SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING, SubscriptionStatus.PAST_DUE}
)
PAYMENT_PROBLEM_STATUSES = frozenset({SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID})


class Subscription(models.Model):
    """A person's plan and, when they bought it, their Stripe subscription as last read."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscription"
    )
    plan = models.ForeignKey(
        Plan, null=True, blank=True, on_delete=models.PROTECT, help_text="Empty: the default plan."
    )
    assigned_by_admin = models.BooleanField(
        default=False,
        help_text="Set by hand: Stripe's events leave the plan alone until the person buys one.",
    )
    status = models.CharField(
        max_length=20, choices=SubscriptionStatus.choices, default=SubscriptionStatus.NONE
    )
    stripe_customer_id = models.CharField(max_length=100, blank=True)
    stripe_subscription_id = models.CharField(max_length=100, blank=True)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    # When the Stripe state applied here was read: a state read earlier never replaces it.
    state_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_customer_id"],
                condition=~Q(stripe_customer_id=""),
                name="one_person_per_customer",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.plan or 'default plan'}"

    @property
    def payment_problem(self) -> bool:
        return self.status in PAYMENT_PROBLEM_STATUSES


class Invoice(models.Model):
    """A purchase, as Stripe's invoice says it: kept for the years tax law asks, without the
    person once they are erased."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="invoices"
    )
    subject_reference = models.CharField(max_length=32, blank=True)  # after erasure: a pseudonym
    stripe_invoice_id = models.CharField(max_length=100, unique=True)
    stripe_customer_id = models.CharField(max_length=100, blank=True)
    number = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()  # the invoice's date
    amount = models.IntegerField(help_text="In the currency's smallest unit (cents).")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20)
    hosted_invoice_url = models.URLField(max_length=1000, blank=True)
    state_at = models.DateTimeField()  # the time of the event it was last updated from

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.number or self.stripe_invoice_id

    @property
    def amount_display(self) -> str:
        return f"{self.amount / 100:.2f} {self.currency.upper()}"


class StripeEvent(models.Model):
    """A webhook event received: its id is unique, so a replay does nothing. The payload is
    kept only until the event is applied (in the same transaction as its effect)."""

    stripe_event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    created = models.DateTimeField()  # when Stripe made it
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["processed_at"])]

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_event_id}"


class UsageKind(models.TextChoices):
    CLOUD_MESSAGE = "cloud_message", "messages"
    IMAGE = "image", "image generations"


class UsageCounter(models.Model):
    """What a person used of one kind in one window (a calendar day, a billing period)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_counters"
    )
    kind = models.CharField(max_length=20, choices=UsageKind.choices)
    window_start = models.DateTimeField()
    used = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "kind", "window_start"], name="one_counter_per_window")
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.kind} from {self.window_start:%Y-%m-%d}: {self.used}"
