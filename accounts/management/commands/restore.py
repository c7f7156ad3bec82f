from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.backups import backup_restore
from localai_site.core.refusals import Refusal


class Command(BaseCommand):
    help = "Restore a backup into this stopped instance, then erase again everyone erased since it was made."

    def add_arguments(self, parser):
        parser.add_argument("path", help="an archive `localai backup` wrote")
        parser.add_argument(
            "--force", action="store_true", help="replace the data of an instance that has some"
        )
        parser.add_argument(
            "--new-secret-key",
            action="store_true",
            help="restore with this instance's keys although the backup was made with others",
        )
        parser.add_argument(
            "--erasure-log",
            action="append",
            default=[],
            type=Path,
            help="another erasures.jsonl to apply (e.g. kept from the data folder of a lost machine)",
        )

    def handle(self, *args, path, force, new_secret_key, erasure_log, **options):
        try:
            report = backup_restore(
                source=Path(path), force=force, new_secret_key=new_secret_key, erasure_logs=tuple(erasure_log)
            )
        except Refusal as refusal:
            raise CommandError(refusal.message) from None
        self.stdout.write(
            f"Restored the backup of {report.created_at} "
            f"(LocalAI {report.app_version}, {report.files} files)."
        )
        if report.migrated:
            self.stdout.write("Its database was brought up to this version's migrations.")
        self.stdout.write(f"Accounts erased again (erased since the backup): {report.erasures_reapplied}.")
        if not report.models_included:
            self.stdout.write("Downloaded models were not in the backup: install them again from the hub.")
