from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "People and privacy"  # allauth's own app is called "Accounts"

    def ready(self) -> None:
        from allauth.account.signals import user_logged_in
        from django.contrib.auth.signals import user_logged_out
        from django.core import checks
        from django.db.models.signals import post_delete, post_save

        from localai_site.core.crypto import register_secret_rotation

        from .checks import DEPLOY_CHECKS, retention_within_promises
        from .mfa import mfa_secrets_rotate
        from .models import User
        from .receivers import sign_in_recorded, sockets_closed_on_logout, sockets_rechecked_on_account_change

        checks.register(retention_within_promises)
        register_secret_rotation(mfa_secrets_rotate)
        for check in DEPLOY_CHECKS:
            checks.register(check, checks.Tags.security, deploy=True)
        user_logged_in.connect(sign_in_recorded, dispatch_uid="accounts.sign_in_recorded")
        user_logged_out.connect(sockets_closed_on_logout, dispatch_uid="accounts.sockets_closed_on_logout")
        post_save.connect(
            sockets_rechecked_on_account_change, sender=User, dispatch_uid="accounts.sockets_on_save"
        )
        post_delete.connect(
            sockets_rechecked_on_account_change, sender=User, dispatch_uid="accounts.sockets_on_delete"
        )
