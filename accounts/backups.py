"""Backups of the whole instance, and restoring one (``localai backup``, ``localai restore``).

A backup is one ``.tar.gz``: the database (SQLite through its online backup API, PostgreSQL
through ``pg_dump --format=custom``, both one consistent snapshot while the instance runs),
then the data folder's files (``media/``: uploads, pictures, generated images, exports), and
``manifest.json`` (format, app version, database engine, migrations, time, key fingerprints,
every file's size and sha256). Files are copied after the snapshot: a row of the snapshot
names a file that existed when it was taken, so it is in the archive unless it was deleted in
the meantime (then by its owner or an erasure, which a restore applies again); files written
later are extras nobody points to.

Not in it unless asked: downloaded model weights (large, and downloaded again from the hub;
``with_models``) and the data folder's ``secret_key`` (``with_secret_key``): whoever holds it
can sign sessions for the live instance and decrypt the stored provider keys, so by default
the operator keeps it apart. A restore checks that the keys match the backup's fingerprints.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path, PurePosixPath
from typing import IO, Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection, connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from localai_site.core.crypto import fernet_keys_in_use
from localai_site.core.env import env_str
from localai_site.core.instance_lock import instance_stopped, restore_unfinished_marker
from localai_site.core.refusals import Refusal

from .erasures import erasure_log_path, erasure_log_read, erasures_reapply, erasures_recorded

BACKUP_FORMAT = 1
MANIFEST = "manifest.json"
SECRET_KEY_FILE = "secret_key"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class RestoreReport:
    created_at: str
    app_version: str
    files: int
    migrated: bool
    erasures_reapplied: int
    models_included: bool


def _fingerprint(secret: str) -> str:
    """Tells two keys apart without saying anything about them."""
    return hmac.new(secret.encode(), b"localai-backup-fingerprint", hashlib.sha256).hexdigest()[:16]


def _key_fingerprints(secret_key: str) -> dict[str, Any]:
    return {
        "secret_key": _fingerprint(secret_key),
        "encryption_keys": [
            _fingerprint(k) for k in fernet_keys_in_use(settings.ENCRYPTION_KEYS, secret_key)
        ],
    }


def _engine() -> str:
    return "postgresql" if connection.vendor == "postgresql" else "sqlite"


def _postgres_environment() -> dict[str, str]:
    """libpq's variables for the configured database: the password never on a command line."""
    db = connection.settings_dict
    values = {
        "PGHOST": db.get("HOST") or "",
        "PGPORT": str(db.get("PORT") or ""),
        "PGUSER": db.get("USER") or "",
        "PGPASSWORD": db.get("PASSWORD") or "",
        "PGDATABASE": db["NAME"],
    }
    return {**os.environ, **{name: value for name, value in values.items() if value}}


def _postgres_tool(name: str, *args: str) -> None:
    if shutil.which(name) is None:
        raise Refusal(
            "postgres_client_missing",
            f"{name} is not installed; it comes with PostgreSQL's client (Debian: postgresql-client), "
            "of the server's major version.",
        )
    done = subprocess.run(
        [name, *args], env=_postgres_environment(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise Refusal("postgres_tool_failed", f"{name} failed: {done.stderr.strip()}")


def _database_snapshot(target: Path) -> None:
    if _engine() == "postgresql":
        # One transaction, one snapshot: every table as of the same moment.
        _postgres_tool("pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={target}")
        return
    source = sqlite3.connect(connection.settings_dict["NAME"], timeout=20)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)  # all pages in one step, under one read transaction
    finally:
        copy.close()
        source.close()


def _files_under(root: Path, *, skip_suffixes: tuple[str, ...] = ()) -> Iterator[Path]:
    if not root.is_dir():
        return
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink() and not name.endswith(skip_suffixes):
                yield path


class _Archive:
    """The tar being written; each member's size and sha256 are noted for the manifest."""

    def __init__(self, tar: tarfile.TarFile, spool_dir: Path) -> None:
        self.tar, self.spool_dir = tar, spool_dir
        self.files: dict[str, dict[str, Any]] = {}

    def add_file(self, source: Path, name: str) -> None:
        # Through a copy: a file written or cut meanwhile must not change size mid-member.
        digest = hashlib.sha256()
        with tempfile.SpooledTemporaryFile(max_size=16 * _CHUNK, dir=str(self.spool_dir)) as spool:
            try:
                with open(source, "rb") as handle:
                    while chunk := handle.read(_CHUNK):
                        digest.update(chunk)
                        spool.write(chunk)
            except FileNotFoundError:
                return  # deleted since the snapshot: its row is gone or going too
            self._add(name, spool, digest.hexdigest())

    def add_bytes(self, name: str, data: bytes) -> None:
        with tempfile.SpooledTemporaryFile() as spool:
            spool.write(data)
            self._add(name, spool, hashlib.sha256(data).hexdigest())

    def _add(self, name: str, spool: IO[bytes], sha256: str) -> None:
        info = tarfile.TarInfo(name)
        info.size = spool.tell()
        info.mtime = int(timezone.now().timestamp())
        info.mode = 0o600
        spool.seek(0)
        self.tar.addfile(info, spool)
        if name != MANIFEST:
            self.files[name] = {"size": info.size, "sha256": sha256}


def backup_default_name() -> str:
    return f"localai-backup-{timezone.now():%Y%m%d-%H%M%S}.tar.gz"


def backup_create(*, destination: Path, with_models: bool = False, with_secret_key: bool = False) -> dict:
    """Write a backup of the running instance to ``destination``; returns its manifest."""
    destination = destination.resolve()
    if destination.exists():
        raise Refusal("backup_exists", f"{destination} exists already; choose another name.")
    if not destination.parent.is_dir():
        raise Refusal("backup_folder_missing", f"The folder {destination.parent} does not exist.")
    if with_secret_key and env_str("SECRET_KEY"):
        raise Refusal(
            "secret_key_from_environment",
            "SECRET_KEY comes from the environment here, not the data folder: keep it where you keep "
            "that setting; the backup cannot include it.",
        )
    migrations = sorted(f"{app}.{name}" for app, name in MigrationRecorder(connection).applied_migrations())
    staging = Path(tempfile.mkdtemp(prefix=".localai-backup-", dir=destination.parent))
    partial = destination.with_name(destination.name + ".partial")
    try:
        database_name = "database/localai." + ("pgdump" if _engine() == "postgresql" else "sqlite3")
        snapshot = staging / "database"
        _database_snapshot(snapshot)
        created_at = timezone.now().isoformat()  # the data is as of this moment
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar:
            archive = _Archive(tar, staging)
            archive.add_file(snapshot, database_name)
            snapshot.unlink()
            media = Path(settings.MEDIA_ROOT)
            for path in _files_under(media):
                archive.add_file(path, f"media/{path.relative_to(media).as_posix()}")
            models_dir = Path(settings.MODELS_DIR)
            if with_models:
                for path in _files_under(models_dir, skip_suffixes=(".partial",)):
                    archive.add_file(path, f"models/{path.relative_to(models_dir).as_posix()}")
            if with_secret_key:
                archive.add_file(Path(settings.DATA_DIR) / SECRET_KEY_FILE, SECRET_KEY_FILE)
            manifest = {
                "format": BACKUP_FORMAT,
                "app": "localai",
                "app_version": version("localai"),
                "created_at": created_at,
                "database": {"engine": _engine(), "file": database_name},
                "migrations": migrations,
                "keys": _key_fingerprints(settings.SECRET_KEY),
                "includes": {"models": with_models, "secret_key": with_secret_key},
                "files": archive.files,
            }
            archive.add_bytes(MANIFEST, json.dumps(manifest, indent=2).encode())
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, destination)
        return manifest
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)


# --- Restore ----------------------------------------------------------------------------


def _unreadable(source: Path, why: object) -> Refusal:
    return Refusal(
        "backup_unreadable",
        f"{source} is not a complete LocalAI backup ({why}); it may be damaged or cut short. "
        "Nothing was changed.",
    )


def _member_path(staging: Path, name: str) -> Path:
    """Where a member goes, refusing any name that would land outside the staging folder."""
    parts = PurePosixPath(name).parts
    allowed_top = {"database", "media", "models", SECRET_KEY_FILE, MANIFEST}
    if not parts or parts[0] not in allowed_top or ".." in parts or PurePosixPath(name).is_absolute():
        raise ValueError(f"unexpected member {name!r}")
    return staging.joinpath(*parts)


def _extract(source: Path, staging: Path) -> dict[str, str]:
    """Every member into ``staging``; returns each file's sha256."""
    digests: dict[str, str] = {}
    try:
        with tarfile.open(source, mode="r:gz") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise ValueError(f"{member.name!r} is not a plain file")
                target = _member_path(staging, member.name)
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                reader = tar.extractfile(member)
                assert reader is not None  # a plain file
                with reader, open(target, "wb") as out:
                    while chunk := reader.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                digests[member.name] = digest.hexdigest()
    except FileNotFoundError:
        raise Refusal("backup_missing", f"There is no file {source}.") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise _unreadable(source, exc) from None
    return digests


def _manifest_check(source: Path, staging: Path, digests: dict[str, str]) -> dict:
    try:
        manifest = json.loads((staging / MANIFEST).read_text())
    except (OSError, ValueError):
        raise _unreadable(source, "it has no manifest") from None
    if manifest.get("app") != "localai" or "files" not in manifest:
        raise _unreadable(source, "its manifest is not a LocalAI backup's")
    if manifest.get("format") != BACKUP_FORMAT:
        raise Refusal(
            "backup_format",
            f"This backup has format {manifest.get('format')}; this LocalAI reads format {BACKUP_FORMAT}.",
        )
    listed: dict[str, dict] = manifest["files"]
    found = {name for name in digests if name != MANIFEST}
    for name in sorted(set(listed) | found):
        if name not in found:
            raise _unreadable(source, f"{name} is missing")
        if name not in listed:
            raise _unreadable(source, f"{name} is not in its manifest")
        if digests[name] != listed[name]["sha256"]:
            raise _unreadable(source, f"the checksum of {name} does not match")
    return manifest


def _database_empty() -> bool:
    return not connection.introspection.table_names()


def _compatibility_check(manifest: dict, *, staging: Path, new_secret_key: bool) -> str:
    """Refuse what this instance cannot restore; returns the secret key the restored instance
    will have."""
    if manifest["database"]["engine"] != _engine():
        raise Refusal(
            "engine_mismatch",
            f"This backup holds a {manifest['database']['engine']} database and this instance uses "
            f"{_engine()}: restore it into the same kind of database.",
        )
    known = {
        f"{app}.{name}" for app, name in MigrationLoader(None, ignore_no_migrations=True).disk_migrations
    }
    unknown = sorted(set(manifest["migrations"]) - known)
    if unknown:
        raise Refusal(
            "backup_newer",
            f"This backup was made by a newer LocalAI ({manifest['app_version']}; migrations this one "
            f"does not have: {', '.join(unknown[:5])}). Upgrade LocalAI, then restore.",
        )
    carried = staging / SECRET_KEY_FILE
    secret_key = settings.SECRET_KEY
    if carried.exists() and not env_str("SECRET_KEY"):
        secret_key = carried.read_text().strip()
    if _key_fingerprints(secret_key) != manifest["keys"] and not new_secret_key:
        raise Refusal(
            "keys_differ",
            "This backup was made with another SECRET_KEY or LOCALAI_ENCRYPTION_KEYS. Without them the "
            "stored provider keys cannot be decrypted, API keys stop working and everyone signs in again. "
            f"Put that instance's secret_key file in {settings.DATA_DIR} (or set the same SECRET_KEY "
            "and LOCALAI_ENCRYPTION_KEYS), or restore with --new-secret-key to accept that.",
        )
    return secret_key


def _database_replace(snapshot: Path) -> None:
    connections.close_all()
    if _engine() == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        connections.close_all()
        _postgres_tool(
            "pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
            f"--dbname={connection.settings_dict['NAME']}", str(snapshot),
        )  # fmt: skip
        return
    source = sqlite3.connect(snapshot)
    target = sqlite3.connect(connection.settings_dict["NAME"], timeout=20)
    try:
        source.backup(target)  # replaces every page of the target, WAL included
    finally:
        target.close()
        source.close()


def _folder_replace(staged: Path, target: Path, trash: Path) -> None:
    if target.exists():
        os.replace(target, trash)
    target.parent.mkdir(parents=True, exist_ok=True)
    if staged.exists():
        os.replace(staged, target)
    else:
        target.mkdir()


@contextmanager
def _marked_unfinished() -> Iterator[None]:
    """From the first change to the last erasure applied again, a marker keeps every process
    from starting on data that may still hold erased people."""
    marker = restore_unfinished_marker()
    marker.write_text("A restore began at " + timezone.now().isoformat() + "\n")
    yield
    marker.unlink()


def backup_restore(
    *, source: Path, force: bool = False, new_secret_key: bool = False, erasure_logs: tuple[Path, ...] = ()
) -> RestoreReport:
    """Restore the backup at ``source`` into this (stopped) instance."""
    data_dir = Path(settings.DATA_DIR)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir))
    try:
        with instance_stopped():
            manifest = _manifest_check(source, staging, _extract(source, staging))
            secret_key = _compatibility_check(manifest, staging=staging, new_secret_key=new_secret_key)
            resuming = restore_unfinished_marker().exists()
            if not (force or resuming or _database_empty()):
                raise Refusal(
                    "target_not_empty",
                    "This instance already has data (its database is not empty). A restore replaces "
                    "all of it: run again with --force to do that.",
                )
            # Read before anything is replaced: the erasures this instance knows of.
            known = erasures_recorded()
            for log in (erasure_log_path(), *erasure_logs):
                known.update(erasure_log_read(log))
            keys_before = settings.SECRET_KEY
            with _marked_unfinished():
                _database_replace(staging / manifest["database"]["file"])
                ContentType.objects.clear_cache()  # ids of the database replaced
                _folder_replace(staging / "media", Path(settings.MEDIA_ROOT), staging / "media.replaced")
                for path in _files_under(staging / "models"):
                    target = Path(settings.MODELS_DIR) / path.relative_to(staging / "models")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, target)
                if secret_key != settings.SECRET_KEY:
                    os.chmod(staging / SECRET_KEY_FILE, 0o600)
                    os.replace(staging / SECRET_KEY_FILE, data_dir / SECRET_KEY_FILE)
                    # From here on this process is the restored instance: its pseudonyms and
                    # erasure records are made with the restored key.
                    settings.SECRET_KEY = secret_key
                behind = _migrations_behind()
                if behind:
                    call_command("migrate", interactive=False, verbosity=0)
                reapplied = erasures_reapply(known=known, secret_keys=[settings.SECRET_KEY, keys_before])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RestoreReport(
        created_at=manifest["created_at"],
        app_version=manifest["app_version"],
        files=len(manifest["files"]),
        migrated=behind,
        erasures_reapplied=reapplied,
        models_included=manifest["includes"]["models"],
    )


def _migrations_behind() -> bool:
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    return bool(set(loader.disk_migrations) - loader.applied_migrations.keys())
