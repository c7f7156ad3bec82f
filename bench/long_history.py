"""Does a long conversation cost more to open or to write in than a short one?

Builds a conversation of 5,000 messages (alternating user/assistant, 200–800 characters,
assistant replies done, some Markdown in them) with bulk_create, then measures in-process,
with django.test.Client and CaptureQueriesContext:

- open: GET /c/<uuid>/ by its owner (server time: the whole request through the
  middleware, the view and the template; median of --runs after a warm-up). Runs
  alternate long, baseline, two-message, long, baseline… The baseline is a conversation
  of exactly one page (50 messages): the page renders the same amount, so
  ``open_ratio`` = long / baseline shows what the history *behind* the page costs
  (≈ 1.0 when nothing scales with it). A two-message conversation is measured too.
  The page must render only the newest page of messages (``open_rendered``).
- send: chat.services.message_send in the long conversation vs the 2nd message of a
  short conversation (one exchange done, title set), each in a transaction rolled back
  afterwards, so no reply is generated and every run sees the same state. Queries are
  the statements message_send runs, less the SAVEPOINT/RELEASE its own atomic block
  adds inside the rolled-back one. The 1st message of an empty conversation (which also
  sets the title) is reported as ``send_queries_first`` for comparison.
- older: GET of one page of older messages from the middle of the history (the
  scroll-back request), when the app has that URL.

Targets: open_ms <= 150, open_queries <= 15, send_queries_long == send_queries_new.
Speeds are also reported as ratios against the baseline measured in the same run.

    .venv/bin/python bench/long_history.py [--runs 9] [--messages 5000]
    .venv/bin/python bench/long_history.py --database-url postgres://postgres@127.0.0.1:5432/postgres

SQLite in a temporary data folder by default (embedded mode); with --database-url, a
fresh database is created on that PostgreSQL server (the name in the URL is ignored),
analyzed once filled, as autovacuum would, and dropped at the end. One JSON line goes
to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import bench_environment, log, median, report  # noqa: E402

WORDS = [
    "the", "a", "model", "reply", "history", "context", "token", "stream", "page", "message",
    "socket", "worker", "local", "cloud", "privacy", "answer", "question", "because", "which",
    "while", "should", "could", "would", "simply", "quickly", "database", "index", "query",
    "render", "template", "browser", "server", "process", "memory", "thread", "lighthouse",
    "keeper", "storm", "harbour", "evening", "window", "light", "ship", "captain", "rope", "wind",
]  # fmt: skip


# --- building the data ------------------------------------------------------------------------
def _sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(6, 16))
    return " ".join(words).capitalize() + "."


def _text(rng: random.Random, low: int, high: int, *, markdown: bool) -> str:
    """Prose of ``low``–``high`` characters; replies get the Markdown models write."""
    target = rng.randint(low, high)
    parts: list[str] = []
    while sum(len(p) + 2 for p in parts) < target:
        if markdown and parts and rng.random() < 0.15:
            parts.append("\n".join(f"- **{rng.choice(WORDS)}**: {_sentence(rng)}" for _ in range(3)))
        elif markdown and parts and rng.random() < 0.05:
            parts.append(f"```python\nprint({rng.choice(WORDS)!r})\n```")
        else:
            parts.append(" ".join(_sentence(rng) for _ in range(rng.randint(1, 3))))
    return "\n\n".join(parts)[:high]


def conversation_build(*, owner, model_id: str, messages: int, title: str, rng: random.Random):
    """A conversation with ``messages`` finished messages, as a long chat leaves it."""
    from chat.models import Conversation, Message, MessageStatus, Provider, Role

    conversation = Conversation.objects.create(
        owner=owner, model=model_id, provider=Provider.LOCAL, title=title
    )
    rows = []
    for index in range(messages):
        if index % 2 == 0:
            rows.append(
                Message(
                    conversation=conversation, role=Role.USER, content=_text(rng, 200, 500, markdown=False),
                    model=model_id, provider=Provider.LOCAL,
                )
            )  # fmt: skip
        else:
            content = _text(rng, 300, 800, markdown=True)
            rows.append(
                Message(
                    conversation=conversation, role=Role.ASSISTANT, content=content,
                    status=MessageStatus.DONE, model=model_id, provider=Provider.LOCAL,
                    prompt_tokens=rng.randint(50, 4000), completion_tokens=len(content) // 4,
                    ttft_ms=rng.randint(10, 200), duration_ms=rng.randint(1000, 9000),
                )
            )  # fmt: skip
    Message.objects.bulk_create(rows, batch_size=500)
    return conversation


# --- measuring --------------------------------------------------------------------------------
def _is_transaction_control(sql: str) -> bool:
    return sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"))


def _timed_sql(captured) -> list[str]:
    return [f"{float(q['time']) * 1000:6.2f} ms  {q['sql'][:160]}" for q in captured]


def page_open(client, url: str) -> tuple[float, list[str], bytes]:
    """(ms, SQL run, body) of one GET, as the server spends it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        start = time.perf_counter()
        response = client.get(url)
        elapsed_ms = (time.perf_counter() - start) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}")
    return elapsed_ms, _timed_sql(captured.captured_queries), response.content


def send_measure(*, owner, conversation_id, content: str) -> tuple[float, list[str]]:
    """(ms, SQL) of message_send on a conversation fetched as a request would fetch it;
    rolled back afterwards, so no reply is started and the next run sees the same state."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from chat.selectors import conversation_get_owned
    from chat.services import message_send

    conversation = conversation_get_owned(user=owner, conversation_id=conversation_id)
    with transaction.atomic():
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            message_send(conversation=conversation, content=content)
            elapsed_ms = (time.perf_counter() - start) * 1000
        transaction.set_rollback(True)  # on_commit (publish, enqueue) never runs
    return elapsed_ms, _timed_sql(
        q for q in captured.captured_queries if not _is_transaction_control(q["sql"])
    )


def _same_count(name: str, runs: list[list[str]]) -> int:
    counts = {len(sql) for sql in runs}
    if len(counts) != 1:
        log(f"{name}: query count varied between runs: {sorted(counts)}")
    return max(counts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9, help="measured runs of each kind (>= 7)")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--database-url", help="a PostgreSQL server URL; a fresh database is made there")
    parser.add_argument(
        "--show-sql", action="store_true", help="print the SQL of each measured kind to stderr"
    )
    args = parser.parse_args()

    # Embedded mode: no Redis (an empty value counts as unset), in-process everything.
    with bench_environment(args.database_url, REDIS_URL="") as (_, env):
        result = run(args, env["DATABASE_URL"])
    report(result)


def run(args, database_url: str) -> dict:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.urls import NoReverseMatch, reverse

    from accounts.models import User
    from chat.models import Conversation
    from models_hub.services import bundled_model_register

    call_command("migrate", verbosity=0)
    model_id = bundled_model_register().model_id
    # A person who has chatted before: their default model is already this one, so no
    # send below also saves the user row.
    owner = User.objects.create_user("long-history@example.com", "bench-password-1", default_model=model_id)
    rng = random.Random(5000)

    started = time.perf_counter()
    long_chat = conversation_build(
        owner=owner, model_id=model_id, messages=args.messages, title="A long conversation", rng=rng
    )
    page_chat = conversation_build(owner=owner, model_id=model_id, messages=50, title="One page", rng=rng)
    short_chat = conversation_build(owner=owner, model_id=model_id, messages=2, title="Two messages", rng=rng)
    empty_chat = Conversation.objects.create(owner=owner, model=model_id)
    if connection.vendor == "postgresql":
        # Autovacuum analyzes a table this size soon after it grows; without statistics
        # the planner sorts the whole conversation for every page, which no live
        # instance would do for long.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    log(f"built {args.messages} + 50 + 2 messages in {time.perf_counter() - started:.1f}s")

    client = Client(HTTP_HOST="127.0.0.1")  # an allowed host, as a browser on this machine sends
    client.force_login(owner)
    url = {
        "long": reverse("chat:conversation", args=[long_chat.pk]),
        "page": reverse("chat:conversation", args=[page_chat.pk]),
        "short": reverse("chat:conversation", args=[short_chat.pk]),
    }
    for name in url:  # warm-up: imports, template compilation, caches
        page_open(client, url[name])
        page_open(client, url[name])

    open_ms: dict[str, list[float]] = {name: [] for name in url}
    open_sql: dict[str, list[list[str]]] = {name: [] for name in url}
    body = b""
    for _ in range(args.runs):
        for name in url:  # alternating, so drift on a shared machine hits all alike
            elapsed, sql, content = page_open(client, url[name])
            open_ms[name].append(elapsed)
            open_sql[name].append(sql)
            body = content if name == "long" else body
    rendered = body.count(b'data-message-id="')
    newest_id = long_chat.messages.order_by("-id").values_list("id", flat=True).first()
    if f'data-message-id="{newest_id}"'.encode() not in body:
        log("the newest message is missing from the page of the long conversation")

    # Scrolling back: one page of older messages from the middle of the long history.
    older: dict = {}
    try:
        middle_id = long_chat.messages.order_by("id").values_list("id", flat=True)[args.messages // 2]
        older_url = reverse("chat:older", args=[long_chat.pk]) + f"?before={middle_id}"
    except NoReverseMatch:
        older_url = None
    if older_url:
        page_open(client, older_url)
        older_runs = [page_open(client, older_url) for _ in range(args.runs)]
        older = {
            "older_ms": median([ms for ms, _, _ in older_runs]),
            "older_queries": _same_count("older", [sql for _, sql, _ in older_runs]),
            "older_rendered": older_runs[0][2].count(b'data-message-id="'),
        }

    sends = {"long": long_chat.pk, "new": short_chat.pk, "first": empty_chat.pk}
    send_ms: dict[str, list[float]] = {name: [] for name in sends}
    send_sql: dict[str, list[list[str]]] = {name: [] for name in sends}
    for run_index in range(args.runs + 1):
        for name, conversation_id in sends.items():
            content = f"Another question about the lighthouse, number {run_index}?"
            elapsed, sql = send_measure(owner=owner, conversation_id=conversation_id, content=content)
            if run_index:  # the first round is a warm-up
                send_ms[name].append(elapsed)
                send_sql[name].append(sql)

    if args.show_sql:
        for name in url:
            log(f"open {name}:\n  " + "\n  ".join(open_sql[name][-1]))
        for name in sends:
            log(f"send {name}:\n  " + "\n  ".join(send_sql[name][-1]))

    open_long, open_page = median(open_ms["long"]), median(open_ms["page"])
    open_queries = _same_count("open long", open_sql["long"])
    send_long, send_new = _same_count("send long", send_sql["long"]), _same_count("send new", send_sql["new"])
    return {
        "bench": "long_history",
        "database": connection.vendor,
        "messages": args.messages,
        "open_ms": open_long,
        "open_queries": open_queries,
        "open_rendered": rendered,
        "open_ms_baseline": open_page,
        "open_queries_baseline": _same_count("open baseline", open_sql["page"]),
        "open_ratio": round(open_long / open_page, 3),
        "open_ms_two_messages": median(open_ms["short"]),
        "send_queries_long": send_long,
        "send_queries_new": send_new,
        "send_queries_first": _same_count("send first", send_sql["first"]),
        "send_ms_long": median(send_ms["long"]),
        "send_ms_new": median(send_ms["new"]),
        "send_ratio": round(median(send_ms["long"]) / median(send_ms["new"]), 3),
        "send_compared": "a message in the long conversation vs the 2nd message of a new one",
        **older,
        "runs": args.runs,
        "targets_met": open_long <= 150 and open_queries <= 15 and send_long == send_new,
    }


if __name__ == "__main__":
    main()
