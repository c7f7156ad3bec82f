"""A loopback Stripe: the API calls billing makes, answered as Stripe answers them, and the
webhook events Stripe would send, signed with Stripe's scheme. Every request is recorded.

It answers: customers created and deleted, Checkout and Customer Portal sessions created,
subscriptions read."""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DAY = 86_400


def stripe_signature(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe sends: ``t=<unix time>,v1=<HMAC-SHA256 of "t.payload">``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


class FakeStripe(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        *,
        checkout_url: str = "https://checkout.stripe.test/c/pay/{id}",
        portal_url: str = "https://billing.stripe.test/p/session/{id}",
    ) -> None:
        super().__init__(("127.0.0.1", 0), _StripeHandler)
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}"
        # Where sessions send the browser: Stripe's pages, or (``{success_url}``, ``{return_url}``)
        # straight back, as if the person had paid or left the portal at once.
        self.checkout_url = checkout_url
        self.portal_url = portal_url
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.customers: dict[str, dict] = {}
        self.sessions: dict[str, dict] = {}
        self.subscriptions: dict[str, dict] = {}
        self.unavailable = False  # answer 500 to everything, as during an outage
        self._ids = itertools.count(1)
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_test{next(self._ids):04d}"

    def calls(self, method: str, path_start: str) -> list[dict[str, str]]:
        return [params for m, path, params in self.requests if m == method and path.startswith(path_start)]

    # --- What happens at Stripe, and the events it sends about it --------------------------

    def event(self, type_: str, obj: dict, *, created: int | None = None) -> dict:
        return {
            "id": self.new_id("evt"),
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": int(time.time()) if created is None else created,
            "type": type_,
            "livemode": False,
            "data": {"object": copy.deepcopy(obj)},
        }

    def checkout_complete(self, session_id: str, *, amount: int = 900) -> list[dict]:
        """The person paid on the Checkout page: a subscription starts and its first invoice is paid."""
        session = self.sessions[session_id]
        now = int(time.time())
        sub_id = self.new_id("sub")
        self.subscriptions[sub_id] = {
            "id": sub_id,
            "object": "subscription",
            "customer": session["customer"],
            "status": "active",
            "cancel_at_period_end": False,
            "cancel_at": None,
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": self.new_id("si"),
                        "object": "subscription_item",
                        "price": {"id": session["price"], "object": "price"},
                        "current_period_start": now,
                        "current_period_end": now + 30 * DAY,
                    }
                ],
            },
        }
        session.update(status="complete", subscription=sub_id)
        return [
            self.event("checkout.session.completed", session),
            self.event("customer.subscription.created", self.subscriptions[sub_id]),
            self.invoice_event(sub_id, paid=True, amount=amount),
        ]

    def invoice_event(self, sub_id: str, *, paid: bool, amount: int = 900, invoice_id: str = "") -> dict:
        sub = self.subscriptions[sub_id]
        invoice_id = invoice_id or self.new_id("in")
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            "customer": sub["customer"],
            "number": f"INV-{invoice_id[-4:]}",
            "created": int(time.time()),
            "amount_due": amount,
            "amount_paid": amount if paid else 0,
            "currency": "eur",
            "status": "paid" if paid else "open",
            "hosted_invoice_url": f"https://invoice.stripe.test/i/{invoice_id}",
            "parent": {"subscription_details": {"subscription": sub_id}},
        }
        return self.event("invoice.paid" if paid else "invoice.payment_failed", invoice)

    def subscription_change(self, sub_id: str, *, price: str | None = None, **fields) -> dict:
        """The subscription changes (portal, renewal, dunning); returns the event about it."""
        sub = self.subscriptions[sub_id]
        sub.update(fields)
        [item] = sub["items"]["data"]
        if price:
            item["price"] = {"id": price, "object": "price"}
        if fields.get("status") == "canceled":
            return self.event("customer.subscription.deleted", sub)
        return self.event("customer.subscription.updated", sub)

    def renew(self, sub_id: str) -> list[dict]:
        [item] = self.subscriptions[sub_id]["items"]["data"]
        item["current_period_start"] = item["current_period_end"]
        item["current_period_end"] += 30 * DAY
        return [
            self.invoice_event(sub_id, paid=True),
            self.event("customer.subscription.updated", self.subscriptions[sub_id]),
        ]


class _StripeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeStripe

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", "req_test")
        self.end_headers()
        self.wfile.write(data)

    def _missing(self, what: str) -> None:
        self._answer(
            404,
            {
                "error": {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "message": f"No such {what}",
                }
            },
        )

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        params = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode())) if length else {}
        path = urllib.parse.urlsplit(self.path).path
        stripe = self.server
        with stripe.lock:
            stripe.requests.append((method, path, params))
            if stripe.unavailable:
                return self._answer(500, {"error": {"type": "api_error", "message": "Stripe is down"}})
            if self.headers.get("Authorization", "") != "Bearer sk_test_loopback":
                return self._answer(401, {"error": {"type": "invalid_request_error", "message": "bad key"}})
            parts = path.strip("/").split("/")
            match method, parts:
                case "POST", ["v1", "customers"]:
                    customer = {
                        "id": stripe.new_id("cus"),
                        "object": "customer",
                        "email": params.get("email"),
                    }
                    stripe.customers[customer["id"]] = customer
                    return self._answer(200, customer)
                case "DELETE", ["v1", "customers", customer_id]:
                    if stripe.customers.pop(customer_id, None) is None:
                        return self._missing("customer")
                    for sub in stripe.subscriptions.values():
                        if sub["customer"] == customer_id:
                            sub["status"] = "canceled"
                    return self._answer(200, {"id": customer_id, "object": "customer", "deleted": True})
                case "POST", ["v1", "checkout", "sessions"]:
                    session_id = stripe.new_id("cs")
                    session = {
                        "id": session_id,
                        "object": "checkout.session",
                        "mode": params.get("mode"),
                        "customer": params.get("customer"),
                        "client_reference_id": params.get("client_reference_id"),
                        "price": params.get("line_items[0][price]"),
                        "success_url": params.get("success_url"),
                        "status": "open",
                        "subscription": None,
                        "url": stripe.checkout_url.format(
                            id=session_id, success_url=params.get("success_url")
                        ),
                    }
                    stripe.sessions[session_id] = session
                    return self._answer(200, session)
                case "POST", ["v1", "billing_portal", "sessions"]:
                    session_id = stripe.new_id("bps")
                    url = stripe.portal_url.format(id=session_id, return_url=params.get("return_url"))
                    return self._answer(
                        200, {"id": session_id, "object": "billing_portal.session", "url": url}
                    )
                case "GET", ["v1", "subscriptions", sub_id]:
                    if sub_id not in stripe.subscriptions:
                        return self._missing("subscription")
                    return self._answer(200, stripe.subscriptions[sub_id])
            return self._answer(
                404, {"error": {"type": "invalid_request_error", "message": f"{method} {path}"}}
            )

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")
