"""The floor every app stands on: environment readers, secrets, stored files, background
tasks, supervised child processes, live events, sockets, Markdown, refusals and the personal-data registry.

Nothing here imports an app (``accounts``, ``models_hub``, ``billing``, ``chat``) or the
project's roof (settings, URLs, ASGI, Celery, the ``localai`` command); an import-linter
contract in ``pyproject.toml`` keeps it so.
"""
