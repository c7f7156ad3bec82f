from localai_site.core.privacy import (
    Erase,
    PersonalData,
    pseudonym,
    register,
    register_before_erase,
    register_section,
)

from .models import Invoice, Subscription, UsageCounter
from .selectors import plan_of
from .services import stripe_customer_end

register(
    PersonalData(
        Subscription,
        owner="user",
        purpose="Your plan and, if you bought one, your Stripe subscription (never card data).",
        category="subscription",
        fields=(
            "plan",
            "assigned_by_admin",
            "status",
            "stripe_customer_id",
            "stripe_subscription_id",
            "current_period_start",
            "current_period_end",
            "cancel_at_period_end",
        ),  # fmt: skip
    ),
    PersonalData(
        Invoice,
        owner="user",
        purpose="Your purchases: kept for the years tax law requires, without your name once you are erased.",
        category="invoices",
        fields=(
            "stripe_invoice_id",
            "number",
            "created_at",
            "amount",
            "currency",
            "status",
            "hosted_invoice_url",
        ),
        erase=Erase.PSEUDONYMISE,
        # Stripe's page of the invoice shows the buyer's name and address: the link goes too.
        pseudonymise={
            "user": None,
            "subject_reference": pseudonym,
            "stripe_customer_id": "",
            "hosted_invoice_url": "",
        },
    ),
    PersonalData(
        UsageCounter,
        owner="user",
        purpose="How much of your plan's limits you used, per day or billing period.",
        category="usage",
        fields=("kind", "window_start", "used"),
    ),
)


def _plan_section(user) -> dict[str, object] | None:
    plan = plan_of(user=user)
    return None if plan is None else {"name": plan.name, "description": plan.description}


register_section("plan", _plan_section)
# Stripe's customer goes first (it ends the subscription too): the person's money must not go on.
register_before_erase(stripe_customer_end)
