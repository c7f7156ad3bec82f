"""The ``localai`` command: ``serve``, ``worker``, and every manage.py command.

The apps are imported only once ``django.setup()`` has run: a command reads its settings
(and can refuse a bad one) first."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

from localai_site.core.env import env_int, env_str
from localai_site.core.instance_lock import instance_lock_hold
from localai_site.core.queues import Queue

if TYPE_CHECKING:
    from django.core.checks import CheckMessage


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "localai_site.settings")
    import django

    django.setup()


def reachable_from_other_machines(host: str) -> bool:
    """Whether ``localai serve --host host`` answers more than this machine."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True  # any other host name may resolve to a public address


def deploy_warnings() -> list[CheckMessage]:
    """What is unsafe on an instance other machines reach: the checks ``check --deploy`` runs."""
    from django.core.checks import Tags, run_checks

    # Every deploy check is tagged security (Django's and accounts/checks.py's).
    found = run_checks(include_deployment_checks=True, tags=[Tags.security])
    return [message for message in found if not message.is_silenced()]


def _deploy_warnings_print(host: str) -> None:
    warnings = deploy_warnings()
    if not warnings:
        return
    print(
        f"Warning: {host} is reachable from other machines, and this instance is not set up for that:",
        file=sys.stderr,
    )
    for warning in warnings:
        print(f"  - {warning.msg} ({warning.id})", file=sys.stderr)
        if warning.hint:
            print(f"    Fix: {warning.hint}", file=sys.stderr)
    print("  (`localai check --deploy` lists them again.)", file=sys.stderr, flush=True)


def serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="localai serve", description="Migrate, then run the web app.")
    parser.add_argument("--host", default=env_str("LOCALAI_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=env_int("LOCALAI_PORT", 8000, minimum=1, maximum=65_535))
    parser.add_argument(
        "--no-migrate", action="store_true", help="skip migrations (another process runs them)"
    )
    args = parser.parse_args(argv)

    _setup_django()
    from django.conf import settings
    from django.core.management import call_command

    instance_lock_hold()
    if not args.no_migrate:
        call_command("migrate", interactive=False, verbosity=0)
    from chat.services import replies_fail_stale
    from models_hub.services import bundled_model_register, downloads_fail_stale, models_missing_mark

    bundled_model_register()
    if not settings.SCALED:
        # Embedded replies and downloads ran in the process that just ended: none can
        # still be alive (a download can be resumed from its partial file).
        replies_fail_stale(everything=True)
        downloads_fail_stale(everything=True)
        # This process runs the models, so their files are on this machine (in scaled mode
        # each worker holds its own).
        models_missing_mark()
        from localai_site.schedule import EmbeddedScheduler

        EmbeddedScheduler().start()

    from daphne.cli import CommandLineInterface

    if reachable_from_other_machines(args.host):
        _deploy_warnings_print(args.host)
    mode = "scaled (Redis)" if settings.SCALED else "embedded"
    # Under a sub-path (LOCALAI_URL_PATH) with it: the app answers it here too, as behind the proxy.
    root = f"http://{args.host}:{args.port}{settings.URL_PATH}"
    print(f"LocalAI is running in {mode} mode at {root}/  (Ctrl+C to stop)", flush=True)
    from accounts.setup_token import setup_token_pending

    setup_token = setup_token_pending()
    if setup_token is not None:
        print(
            "No admin yet. To become the admin, sign up at "
            f"{root}/accounts/signup/?setup={setup_token}  "
            "(or run `localai createsuperuser`)",
            flush=True,
        )
    # No --proxy-headers: forwarded headers are checked against TRUSTED_PROXIES in the app.
    CommandLineInterface().run(
        ["--bind", args.host, "--port", str(args.port), "localai_site.asgi:application"]
    )


def worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="localai worker", description="Run a Celery worker.")
    parser.add_argument(
        "--queues", "-Q", default="local,cloud", help="comma-separated: local, cloud, downloads, exports"
    )
    parser.add_argument(
        "--concurrency",
        "-c",
        type=int,
        default=None,
        help="tasks at once (default: CLOUD_CONCURRENCY with the cloud queue, LOCAL_CONCURRENCY "
        "for a local-only worker, else 8)",
    )
    parser.add_argument("--loglevel", "-l", default="info")
    parser.add_argument("--beat", action="store_true", help="also run the periodic-task scheduler")
    args, extra = parser.parse_known_args(argv)

    _setup_django()
    from django.conf import settings

    if not settings.SCALED:
        sys.exit("localai worker needs REDIS_URL: in embedded mode replies run inside `localai serve`.")
    instance_lock_hold()
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = set(queues) - set(Queue)
    if unknown:
        sys.exit(f"Unknown queue(s): {', '.join(sorted(unknown))}. Use local, cloud, downloads, exports.")
    if Queue.DEFAULT not in queues:
        queues.append(Queue.DEFAULT)  # housekeeping, such as failing replies whose worker died
    local_only = queues == [Queue.LOCAL, Queue.DEFAULT]
    if Queue.LOCAL in queues:
        # This worker's own queue: replies for a model it holds are sent straight to it.
        from models_hub.workers import worker_queue_name

        queues.append(worker_queue_name())
    # Local replies: a thread each, their tokens written together by the model runner's batch
    # (models_hub.batching), replies beyond a model's slots waiting there for a fair turn. Cloud
    # replies wait on the network: one thread each, hundreds at once (a reply's thread holds no
    # database connection while it streams, chat/streaming.py). Threads rather than gevent or
    # asyncio: the reply path (openai SDK, Redis, psycopg, Django's per-thread connections)
    # stays the one synchronous path that embedded mode runs too, with nothing monkey-patched.
    default = settings.CLOUD_CONCURRENCY if Queue.CLOUD in queues else 8
    concurrency = args.concurrency or (settings.LOCAL_CONCURRENCY if local_only else default)
    pool = ["--pool", "threads", "--concurrency", str(concurrency)]
    from localai_site.celery import app

    command = [
        "worker",
        "--queues",
        ",".join(queues),
        "--loglevel",
        args.loglevel,
        *pool,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if args.beat:
        command.append("--beat")
    app.worker_main([*command, *extra])


def _run(argv: list[str]) -> None:
    command = argv[0] if argv else "help"
    if command == "serve":
        serve(argv[1:])
    elif command == "worker":
        worker(argv[1:])
    else:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "localai_site.settings")
        from django.core.management import execute_from_command_line

        execute_from_command_line(["localai", *argv])


def main(argv: list[str] | None = None) -> None:
    try:
        _run(list(sys.argv[1:] if argv is None else argv))
    except ImproperlyConfigured as exc:
        # A setting read from the environment is wrong: say which, without a traceback.
        sys.exit(f"localai: {exc}")


if __name__ == "__main__":
    main()
