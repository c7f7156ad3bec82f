from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from accounts.retention import RetentionRule, retention_rule_register

        from .retention import invoices_purge, stripe_events_purge

        retention_rule_register(
            RetentionRule("invoices", "Invoices (without your name once erased)", invoices_purge)
        )
        retention_rule_register(
            RetentionRule("stripe_events", "Ids of payment events received", stripe_events_purge)
        )
