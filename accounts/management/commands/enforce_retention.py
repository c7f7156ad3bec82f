from django.core.management.base import BaseCommand

from accounts.retention import RULES, retention_enforce


class Command(BaseCommand):
    help = "Delete what the retention table says is kept too long (the scheduler also does this hourly)."

    def handle(self, *args, **options):
        removed = retention_enforce()
        for rule in RULES:
            self.stdout.write(f"{rule.kept:<48} kept {rule.days:>5} days   removed {removed[rule.key]}")
