"""Writing a reply: the worker's side, from queued to done, stopped or failed."""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone

from accounts.analytics import usage_record
from accounts.models import UsageEventName
from chat import live
from chat.models import Message, MessageStatus
from chat.providers import ChatProvider, GenerationParams, provider_for
from chat.streaming import ReplyHeartbeat, ReplyWriter, reply_database
from localai_site.core.realtime import publisher
from localai_site.core.refusals import Refusal

from .choice import model_choose
from .prompt import Prompt, prompt_build
from .replies import message_publish
from .uploads import uploads_delivered

logger = logging.getLogger(__name__)

# Written with the final status, in one compare-and-set.
_FINAL_FIELDS = (
    "content",
    "error",
    "ttft_ms",
    "duration_ms",
    "finished_at",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "omitted_turns",
    "pages_used",
)


def _params_for(reply: Message) -> GenerationParams:
    """The instance's sampling, the persona's temperature, and what an API caller asked for
    (``chat.api`` checked it), never more tokens than the instance allows."""
    persona = reply.conversation.persona
    temperature = persona.temperature if persona and persona.temperature is not None else None
    asked = reply.sampling or {}
    return GenerationParams(
        max_tokens=min(asked.get("max_tokens") or settings.CHAT_MAX_TOKENS, settings.CHAT_MAX_TOKENS),
        temperature=asked.get(
            "temperature", settings.CHAT_TEMPERATURE if temperature is None else temperature
        ),
        top_p=asked.get("top_p"),
        stop=tuple(asked.get("stop", ())),
        seed=asked.get("seed"),
        prompt_cache_key=reply.conversation.prompt_cache_key,
    )


def _reply_take(message_id: int) -> Message | None:
    """The reply, now streaming, if it was still queued."""
    now = timezone.now()
    if not Message.objects.transition(
        message_id, to=MessageStatus.STREAMING, source=MessageStatus.QUEUED, started_at=now, heartbeat_at=now
    ):
        return None  # stopped before a worker got to it, or already taken
    return (
        Message.objects.select_related("conversation__persona", "conversation__owner")
        .prefetch_related("attachments")  # read here: its bubble is rendered on the reply's thread
        .get(pk=message_id)
    )


def _reply_prepare(reply: Message) -> tuple[ChatProvider, GenerationParams, Prompt]:
    choice = model_choose(user=reply.conversation.owner, model_id=reply.model)
    provider = provider_for(choice)
    params = _params_for(reply)
    prompt = prompt_build(
        reply=reply,
        provider=provider,
        context_length=choice.context_length,
        max_tokens=params.max_tokens,
    )
    reply.omitted_turns = prompt.omitted
    reply.pages_used = prompt.pages_used[:500]
    uploads_delivered(upload_ids=prompt.upload_ids, model=reply.model, provider=reply.provider)
    return provider, params, prompt


def _reply_finish(reply: Message) -> bool:
    """Write the reply's final state, only while it is still ours: a reply failed as stale,
    or removed by a regenerate, while this worker was slow stays as it is now."""
    written = Message.objects.transition(
        reply.pk,
        to=reply.status,
        source=MessageStatus.STREAMING,
        **{name: getattr(reply, name) for name in _FINAL_FIELDS},
    )
    if written and reply.status != MessageStatus.FAILED:
        usage_record(
            user=reply.conversation.owner,
            name=UsageEventName.REPLY_FINISHED,
            model=reply.model,
            provider=reply.provider,
            duration_ms=reply.duration_ms,
        )
    return written


def reply_generate(*, message_id: int) -> None:
    """Write the reply ``message_id`` with its model, streaming it to every open socket.

    Its thread holds no database connection: the reads and writes before and after the
    stream run on the reply database threads, the saves while it streams on the process's
    reply keeper (``chat.streaming``), so a worker streams hundreds of replies at once."""
    reply = reply_database(_reply_take, message_id)
    if reply is None:
        return
    message_publish(reply)
    writer = ReplyWriter(message=reply, group=reply.conversation.group_name)
    usage = None
    try:
        with ReplyHeartbeat(writer):
            provider, params, prompt = reply_database(_reply_prepare, reply)
            for delta in provider.stream(prompt.turns, params, writer.cancel):
                if delta.text:
                    writer.add(delta.text)
                if delta.completion_tokens is not None:
                    usage = delta
            writer.flush()
        status = MessageStatus.STOPPED if writer.cancel.is_set() else MessageStatus.DONE
        error = ""
    except Refusal as exc:
        status, error = MessageStatus.FAILED, exc.message
    except Exception:
        logger.exception("Generating reply %s failed", message_id)
        status, error = MessageStatus.FAILED, "The model failed while writing this reply."
    reply.content = writer.text
    reply.status = status
    reply.error = error[:500]
    reply.ttft_ms = writer.ttft_ms
    reply.duration_ms = writer.elapsed_ms()
    reply.finished_at = timezone.now()
    if usage is not None:
        reply.prompt_tokens = usage.prompt_tokens
        reply.cached_tokens = usage.cached_tokens
        reply.completion_tokens = usage.completion_tokens
    written = reply_database(_reply_finish, reply)
    live.live_state_clear(reply.pk)
    if not written:
        logger.info("Reply %s was failed or removed meanwhile; its late result is dropped", reply.pk)
        return
    message_publish(reply)
    publisher.flush()
