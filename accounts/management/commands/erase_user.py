import json

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from localai_site.core.privacy import user_erase


class Command(BaseCommand):
    help = "Erase one person's account and everything the instance keeps about them."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--yes", action="store_true", help="do it: erasure cannot be undone")

    def handle(self, *args, email, yes, **options):
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No account has the address {email}.")
        if not yes:
            raise CommandError("Erasure cannot be undone; run again with --yes to erase this account.")
        receipt = user_erase(user=user)
        self.stdout.write(json.dumps({"erased": receipt}, indent=2))
