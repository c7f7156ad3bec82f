"""Subscriptions through Stripe: the stripe library, unpatched, against a loopback Stripe;
webhooks signed with Stripe's scheme and verified by the library."""

import time

import pytest
from django.core.management import call_command
from django.urls import reverse

from accounts.forms import DELETE_WORD
from billing.models import Invoice, StripeEvent, Subscription
from billing.services import plan_assign
from localai_site.core.privacy import user_erase
from tests.billing.conftest import ART_PRO_PRICE, deliver, webhook_post
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def ann_client(client, user):
    client.force_login(user)
    return client


def _subscribe(client, stripe, plan_slug="ai-chat-pro") -> str:
    """Ann buys ``plan_slug`` on Stripe's Checkout page; returns her subscription's id."""
    response = client.post(reverse("billing:checkout", args=[plan_slug]))
    assert response.status_code == 302
    [session_id] = stripe.sessions
    assert response["Location"] == f"https://checkout.stripe.test/c/pay/{session_id}"
    deliver(client, *stripe.checkout_complete(session_id))
    return stripe.sessions[session_id]["subscription"]


def _plan_page(client) -> str:
    return client.get(reverse("billing:plan")).content.decode()


def test_subscribing_through_checkout_puts_the_person_on_the_plan_with_an_invoice(
    ann_client, user, billing_on
):
    assert "Upgrade to AI Chat Pro" in _plan_page(ann_client)
    sub_id = _subscribe(ann_client, billing_on)

    [customer] = billing_on.calls("POST", "/v1/customers")
    assert customer["email"] == user.email
    [session] = billing_on.calls("POST", "/v1/checkout/sessions")
    assert session["mode"] == "subscription" and session["line_items[0][price]"] == "price_chat_pro"
    assert session["client_reference_id"] == str(user.pk)
    subscription = Subscription.objects.get(user=user)
    assert subscription.plan.name == "AI Chat Pro" and subscription.status == "active"
    assert subscription.stripe_subscription_id == sub_id and not subscription.assigned_by_admin
    [invoice] = Invoice.objects.filter(user=user)
    assert (invoice.amount_display, invoice.status) == ("9.00 EUR", "paid")
    page = _plan_page(ann_client)
    assert "AI Chat Pro" in page and "renews" in page and invoice.hosted_invoice_url in page
    assert "Upgrade to" not in page and "Manage billing" in page
    # What Stripe sent is not kept once applied: only the events' ids.
    assert set(StripeEvent.objects.values_list("payload", flat=True)) == {None}


def test_a_renewal_moves_the_period_on_and_adds_an_invoice(ann_client, user, billing_on):
    sub_id = _subscribe(ann_client, billing_on)
    first_end = Subscription.objects.get(user=user).current_period_end
    deliver(ann_client, *billing_on.renew(sub_id))
    subscription = Subscription.objects.get(user=user)
    assert (subscription.current_period_end - first_end).days == 30
    assert Invoice.objects.filter(user=user, status="paid").count() == 2


def test_a_failed_payment_keeps_the_plan_with_a_banner_until_the_payment_recovers(
    ann_client, user, billing_on
):
    sub_id = _subscribe(ann_client, billing_on)
    deliver(
        ann_client,
        billing_on.subscription_change(sub_id, status="past_due"),
        billing_on.invoice_event(sub_id, paid=False, invoice_id="in_retry"),
    )
    subscription = Subscription.objects.get(user=user)
    assert subscription.plan.name == "AI Chat Pro" and subscription.status == "past_due"
    assert "Your last payment failed" in _plan_page(ann_client)
    assert Invoice.objects.get(stripe_invoice_id="in_retry").status == "open"

    deliver(
        ann_client,
        billing_on.invoice_event(sub_id, paid=True, invoice_id="in_retry"),
        billing_on.subscription_change(sub_id, status="active"),
    )
    assert Subscription.objects.get(user=user).status == "active"
    assert Invoice.objects.get(stripe_invoice_id="in_retry").status == "paid"
    assert "Your last payment failed" not in _plan_page(ann_client)


def test_a_plan_change_in_the_portal_changes_the_plan(ann_client, user, billing_on):
    sub_id = _subscribe(ann_client, billing_on)
    response = ann_client.post(reverse("billing:portal"))
    assert response["Location"].startswith("https://billing.stripe.test/p/session/")
    [portal] = billing_on.calls("POST", "/v1/billing_portal/sessions")
    assert portal["customer"] == Subscription.objects.get(user=user).stripe_customer_id
    deliver(ann_client, billing_on.subscription_change(sub_id, price=ART_PRO_PRICE))
    assert Subscription.objects.get(user=user).plan.name == "AI Art Pro"


def test_cancelling_at_period_end_keeps_the_plan_until_stripe_ends_it(ann_client, user, billing_on):
    sub_id = _subscribe(ann_client, billing_on)
    end = billing_on.subscriptions[sub_id]["items"]["data"][0]["current_period_end"]
    deliver(ann_client, billing_on.subscription_change(sub_id, cancel_at_period_end=True, cancel_at=end))
    subscription = Subscription.objects.get(user=user)
    assert subscription.plan.name == "AI Chat Pro" and subscription.cancel_at_period_end
    assert "ends" in _plan_page(ann_client) and "renews" not in _plan_page(ann_client)

    deliver(ann_client, billing_on.subscription_change(sub_id, status="canceled"))
    subscription = Subscription.objects.get(user=user)
    assert subscription.plan is None and subscription.status == "canceled"
    assert "<h2>Free</h2>" in _plan_page(ann_client)


def test_an_immediate_cancel_drops_the_person_to_free(ann_client, user, billing_on):
    sub_id = _subscribe(ann_client, billing_on)
    deliver(ann_client, billing_on.subscription_change(sub_id, status="canceled"))
    assert Subscription.objects.get(user=user).plan is None
    assert "Upgrade to AI Chat Pro" in _plan_page(ann_client)  # may buy again


def test_a_replayed_event_does_nothing(ann_client, user, billing_on):
    sub_id = _subscribe(ann_client, billing_on)
    renewal = billing_on.renew(sub_id)
    deliver(ann_client, *renewal)
    reads = len(billing_on.calls("GET", "/v1/subscriptions/"))
    deliver(ann_client, *renewal)  # Stripe retries both
    assert StripeEvent.objects.filter(stripe_event_id=renewal[0]["id"]).count() == 1
    assert len(billing_on.calls("GET", "/v1/subscriptions/")) == reads
    assert Invoice.objects.filter(user=user).count() == 2


def test_events_in_reverse_order_end_in_stripes_latest_state(ann_client, user, billing_on):
    ann_client.post(reverse("billing:checkout", args=["ai-chat-pro"]))
    [session_id] = billing_on.sessions
    events = billing_on.checkout_complete(session_id)
    sub_id = billing_on.sessions[session_id]["subscription"]
    events.append(billing_on.subscription_change(sub_id, price=ART_PRO_PRICE))
    events.append(billing_on.subscription_change(sub_id, status="canceled"))
    deliver(ann_client, *reversed(events))
    subscription = Subscription.objects.get(user=user)
    # The "created" and "paid" events came last, yet the subscription is known to be over.
    assert subscription.plan is None and subscription.status == "canceled"
    assert StripeEvent.objects.filter(processed_at__isnull=True).count() == 0


def test_unsigned_wrongly_signed_and_stale_webhooks_get_400_and_change_nothing(
    client, user, billing_on, plans
):
    plan_assign(user=user, plan=plans["free"])
    Subscription.objects.filter(user=user).update(stripe_customer_id="cus_ann", assigned_by_admin=False)
    billing_on.subscriptions["sub_x"] = {"id": "sub_x", "customer": "cus_ann"}
    forged = billing_on.event("customer.subscription.updated", {"id": "sub_x", "customer": "cus_ann"})
    url = reverse("billing:stripe_webhook")
    missing = client.post(url, data=b"{}", content_type="application/json")
    wrong = webhook_post(client, forged, secret="whsec_guessed")
    stale = webhook_post(client, forged, timestamp=int(time.time()) - 600)
    assert [r.status_code for r in (missing, wrong, stale)] == [400, 400, 400]
    assert StripeEvent.objects.count() == 0 and billing_on.calls("GET", "/v1/subscriptions/") == []


def test_unknown_event_types_are_acknowledged_and_ignored(client, billing_on):
    response = webhook_post(client, billing_on.event("customer.tax_id.created", {"id": "txi_1"}))
    assert response.status_code == 200 and StripeEvent.objects.count() == 0


def test_erasure_ends_the_subscription_at_stripe_and_keeps_invoices_without_the_person(
    ann_client, user, billing_on
):
    sub_id = _subscribe(ann_client, billing_on)
    customer_id = Subscription.objects.get(user=user).stripe_customer_id
    receipt = user_erase(user=user)
    assert billing_on.calls("DELETE", f"/v1/customers/{customer_id}") == [{}]
    assert billing_on.subscriptions[sub_id]["status"] == "canceled" and not billing_on.customers
    assert receipt["billing.Invoice (pseudonymised)"] == 1
    invoice = Invoice.objects.get()
    assert invoice.user is None and invoice.subject_reference and invoice.hosted_invoice_url == ""
    assert invoice.stripe_customer_id == "" and invoice.amount == 900  # the tax record stays

    # Stripe tells us of the end of the subscription of someone who is no longer here.
    deliver(ann_client, billing_on.event("customer.subscription.deleted", billing_on.subscriptions[sub_id]))
    assert Subscription.objects.count() == 0 and StripeEvent.objects.filter(processed_at=None).count() == 0


def test_erasure_waits_while_stripe_is_down(ann_client, user, billing_on):
    from localai_site.core.refusals import Refusal

    _subscribe(ann_client, billing_on)
    billing_on.unavailable = True
    with pytest.raises(Refusal, match="nothing was erased"):
        user_erase(user=user)
    assert Subscription.objects.filter(user=user).exists()
    billing_on.unavailable = False
    user_erase(user=user)  # tried again
    assert not Subscription.objects.exists() and not billing_on.customers


def test_a_plan_set_by_an_admin_outlives_webhooks_until_the_person_buys(ann_client, user, billing_on, plans):
    sub_id = _subscribe(ann_client, billing_on)
    plan_assign(user=user, plan=plans["ai-art-pro"])
    deliver(ann_client, billing_on.subscription_change(sub_id, status="canceled"))
    subscription = Subscription.objects.get(user=user)
    assert subscription.plan.name == "AI Art Pro" and subscription.assigned_by_admin
    assert "Assigned by an admin" in _plan_page(ann_client)
    billing_on.sessions.clear()
    _subscribe(ann_client, billing_on, "ai-chat-pro")  # she buys one herself
    subscription = Subscription.objects.get(user=user)
    assert subscription.plan.name == "AI Chat Pro" and not subscription.assigned_by_admin


def test_events_that_came_while_stripe_was_down_are_applied_by_the_reconciliation(
    ann_client, user, billing_on
):
    sub_id = _subscribe(ann_client, billing_on)
    change = billing_on.subscription_change(sub_id, price=ART_PRO_PRICE)
    billing_on.unavailable = True
    with pytest.raises(Exception, match="reading a subscription"):
        deliver(ann_client, change)
    pending = StripeEvent.objects.get(stripe_event_id=change["id"])
    assert pending.processed_at is None and pending.payload is not None
    billing_on.unavailable = False
    StripeEvent.objects.filter(pk=pending.pk).update(received_at=pending.received_at.replace(year=2000))
    call_command("billing_reconcile")
    assert Subscription.objects.get(user=user).plan.name == "AI Art Pro"
    assert StripeEvent.objects.get(pk=pending.pk).payload is None


def test_with_billing_off_nothing_is_sold_and_the_webhook_is_not_there(client, user, plans, settings):
    settings.BILLING_ENABLED = False
    client.force_login(user)
    page = _plan_page(client)
    assert "<h2>Free</h2>" in page and "Upgrade to" not in page and "assigned by this instance" in page
    response = client.post(reverse("billing:checkout", args=["ai-chat-pro"]), follow=True)
    assert "Plans are not sold on this instance" in response.content.decode()
    assert (
        client.post(
            reverse("billing:stripe_webhook"), data=b"{}", content_type="application/json"
        ).status_code
        == 404
    )


def test_deleting_ones_account_while_stripe_is_down_says_so_and_erases_nothing(ann_client, user, billing_on):
    _subscribe(ann_client, billing_on)
    billing_on.unavailable = True
    response = ann_client.post(
        reverse("accounts:account_delete"), {"confirmation": DELETE_WORD, "password": PASSWORD}, follow=True
    )
    assert "Stripe did not answer" in response.content.decode()
    assert Subscription.objects.filter(user=user).exists()


def test_a_late_payment_failure_does_not_unpay_a_paid_invoice(ann_client, user, billing_on):
    sub_id = _subscribe(ann_client, billing_on)
    failed = billing_on.invoice_event(sub_id, paid=False, invoice_id="in_late")
    paid = billing_on.invoice_event(sub_id, paid=True, invoice_id="in_late")
    paid["created"] = failed["created"] = int(time.time())  # Stripe's times are whole seconds
    deliver(ann_client, paid, failed)
    assert Invoice.objects.get(stripe_invoice_id="in_late").status == "paid"
