from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.backups import backup_create, backup_default_name
from localai_site.core.refusals import Refusal


class Command(BaseCommand):
    help = (
        "Write the database and the data folder's files to one archive, while the instance runs. "
        "Model weights and the secret key are left out unless asked for."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "path", nargs="?", help="the archive to write (default: localai-backup-<time>.tar.gz)"
        )
        parser.add_argument(
            "--with-models", action="store_true", help="also the downloaded model files (large)"
        )
        parser.add_argument(
            "--with-secret-key",
            action="store_true",
            help="also the data folder's secret_key (then keep the archive as safe as the key itself)",
        )

    def handle(self, *args, path, with_models, with_secret_key, **options):
        destination = Path(path or backup_default_name())
        try:
            manifest = backup_create(
                destination=destination, with_models=with_models, with_secret_key=with_secret_key
            )
        except Refusal as refusal:
            raise CommandError(refusal.message) from None
        size = destination.stat().st_size
        self.stdout.write(
            f"Backup written to {destination} ({len(manifest['files'])} files, {size:,} bytes)."
        )
        if not with_secret_key:
            self.stdout.write(
                "It does not hold the secret key: keep this instance's SECRET_KEY (or its data folder's "
                "secret_key file) and LOCALAI_ENCRYPTION_KEYS safe, apart from the backup."
            )
        if not with_models:
            self.stdout.write(
                "Downloaded models are not in it: install them again from the hub after a restore."
            )
