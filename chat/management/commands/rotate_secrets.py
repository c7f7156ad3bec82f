from django.core.management.base import BaseCommand

from chat.services import secrets_rotate
from models_hub.services import hub_secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt stored secrets (provider API keys, the model hub's access token) "
        "with the first of LOCALAI_ENCRYPTION_KEYS."
    )

    def handle(self, *args, **options):
        count = secrets_rotate() + hub_secrets_rotate()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} secret(s) with the newest key."))
