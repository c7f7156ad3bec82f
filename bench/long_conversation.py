"""Does a long conversation answer as fast as a short one, when others share the model?

Embedded mode, in-process: replies go through chat.services.message_send, the in-process
pool and the real model runner with the bundled model (greedy, --max-tokens per reply), and
the first-token time is the reply's own ``ttft_ms`` (from the worker taking the reply to its
first token: prompt built, counted, evaluated).

A long conversation is given --exchanges finished exchanges (about 3,000 tokens by its
20th turn), then its 19th turn is written (its whole history evaluated: ``ttft_uncached_ms``,
what every turn cost before prompts were kept). Two other people's conversations (of a few
exchanges each) then take a turn on the same model before each measured turn. Runs alternate:

    long:  other, other, turn 20 (21, 22…) of the long conversation
    short: a new conversation's turn 1, other, other, its turn 2

and report medians; ``ratio`` = long / short (goal <= 1.5).

    .venv/bin/python bench/long_conversation.py [--runs 5] [--exchanges 18]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import bench_environment, log, median, report  # noqa: E402
from bench.long_history import _text  # noqa: E402

FOLLOW_UPS = ("Say more about that.", "Why is that?", "Give me an example.", "And then?")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="measured turns of each kind")
    parser.add_argument("--exchanges", type=int, default=18, help="finished exchanges before turn 19")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    load_before = os.getloadavg()
    # Embedded mode: no Redis (an empty value counts as unset), in-process everything.
    env = {"REDIS_URL": "", "CHAT_MAX_TOKENS": str(args.max_tokens), "CHAT_TEMPERATURE": "0"}
    with bench_environment(None, LLAMA_CONTEXT="4096", **env):
        result = run(args)
    report({**result, "load_before": [round(load, 2) for load in load_before]})


def run(args) -> dict:
    import django

    django.setup()
    from django.core.management import call_command

    from accounts.models import User
    from chat import services
    from chat.models import ACTIVE_STATUSES, Conversation, Message, MessageStatus, Provider, Role
    from models_hub import probe
    from models_hub.services import bundled_model_register

    call_command("migrate", verbosity=0)
    model_id = bundled_model_register().model_id
    people = [
        User.objects.create_user(f"person-{n}@example.com", "bench-password-1", default_model=model_id)
        for n in range(3)
    ]
    rng = random.Random(20)

    def seeded(exchanges: int, owner=people[0]) -> Conversation:
        """A conversation with ``exchanges`` finished exchanges (about 150 tokens each)."""
        conversation = Conversation.objects.create(owner=owner, model=model_id, provider=Provider.LOCAL)
        rows = []
        for _ in range(exchanges):
            for role, low, high in ((Role.USER, 150, 250), (Role.ASSISTANT, 350, 450)):
                rows.append(
                    Message(
                        conversation=conversation, role=role, content=_text(rng, low, high, markdown=False),
                        status=MessageStatus.DONE, model=model_id, provider=Provider.LOCAL,
                    )
                )  # fmt: skip
        Message.objects.bulk_create(rows)
        return conversation

    def turn(conversation: Conversation) -> Message:
        _, reply = services.message_send(conversation=conversation, content=rng.choice(FOLLOW_UPS))
        deadline = time.monotonic() + 300
        while (reply := Message.objects.get(pk=reply.pk)).status in ACTIVE_STATUSES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reply {reply.pk} did not end")
            time.sleep(0.02)
        if reply.status != MessageStatus.DONE:
            raise RuntimeError(f"reply {reply.pk} {reply.status}: {reply.error}")
        return reply

    others = [seeded(3, owner=people[1]), seeded(3, owner=people[2])]  # two colleagues
    for other in others:  # their histories evaluated once, as in a team already chatting
        turn(other)
    long_chat = seeded(args.exchanges)
    first = turn(long_chat)  # turn 19: the whole history evaluated
    log(f"turn {args.exchanges + 1}: {first.prompt_tokens} prompt tokens, first token in {first.ttft_ms} ms")

    long_ms, short_ms, long_replies, short_replies = [], [], [], []
    for _ in range(args.runs):
        for other in others:
            turn(other)
        reply = turn(long_chat)
        long_ms.append(reply.ttft_ms)
        long_replies.append(reply)

        short_chat = seeded(0)
        turn(short_chat)
        for other in others:
            turn(other)
        reply = turn(short_chat)
        short_ms.append(reply.ttft_ms)
        short_replies.append(reply)
        log(f"long {long_ms[-1]} ms ({long_replies[-1].prompt_tokens} tokens), short {short_ms[-1]} ms")

    return {
        "bench": "long_conversation",
        "ttft_long_ms": median(long_ms),
        "ttft_short_ms": median(short_ms),
        "ratio": round(median(long_ms) / max(median(short_ms), 1), 2),
        "ttft_uncached_ms": first.ttft_ms,
        "long_prompt_tokens": median([r.prompt_tokens for r in long_replies]),
        "long_cached_tokens": median([r.cached_tokens or 0 for r in long_replies]),
        "short_prompt_tokens": median([r.prompt_tokens for r in short_replies]),
        "runs": args.runs,
        "cpu_features": probe.cpu_features(),
    }


if __name__ == "__main__":
    main()
