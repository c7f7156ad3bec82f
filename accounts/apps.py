from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "People and privacy"  # allauth's own app is called "Accounts"

    def ready(self) -> None:
        from allauth.account.signals import user_logged_in
        from django.core import checks

        from .checks import retention_within_promises
        from .receivers import sign_in_recorded

        checks.register(retention_within_promises)
        user_logged_in.connect(sign_in_recorded, dispatch_uid="accounts.sign_in_recorded")
