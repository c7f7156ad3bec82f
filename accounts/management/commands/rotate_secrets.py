from django.core.management.base import BaseCommand

from localai_site.core.crypto import secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (provider API keys, the model hub's access token, "
        "authenticator app keys and recovery-code seeds) "
        "with the first of LOCALAI_ENCRYPTION_KEYS."
    )

    def handle(self, *args, **options):
        count = secrets_rotate()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} secret(s) with the newest key."))
