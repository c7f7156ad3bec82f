from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from localai_site.core.privacy import user_export


class Command(BaseCommand):
    help = "Write everything the instance keeps about one person to a ZIP (access and portability)."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--output", type=Path, required=True, help="where to write the ZIP")

    def handle(self, *args, email, output, **options):
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No account has the address {email}.")
        counts = user_export(user=user, destination=output)
        self.stdout.write(
            self.style.SUCCESS(f"Wrote {output}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        )
