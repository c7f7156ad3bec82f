"""The API in scaled mode: a completion written by a separate worker process reaches the
tool through Redis, streamed and whole."""

import json

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from accounts.api_keys import api_key_create
from chat.models import Message, Role

pytestmark = [pytest.mark.scaled, pytest.mark.django_db(transaction=True)]


async def _post(client: AsyncClient, secret: str, model_id: str, **extra):
    body = {"model": model_id, "messages": [{"role": "user", "content": "Name three rivers."}], **extra}
    return await client.post(
        "/v1/chat/completions",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )


@pytest.mark.asyncio
async def test_a_completion_written_by_a_worker_streams_through_redis(worker, user, local_model):
    made = await database_sync_to_async(api_key_create)(user=user, name="scaled")
    client = AsyncClient()

    response = await _post(client, made.secret, local_model.model_id, stream=True)
    body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    events = [block for block in body.split("\n\n") if block]
    assert events[-1] == "data: [DONE]"
    pieces = [json.loads(e[6:])["choices"][0]["delta"].get("content") or "" for e in events[:-1]]
    saved = await database_sync_to_async(Message.objects.get)(role=Role.ASSISTANT)
    assert len([p for p in pieces if p]) > 1 and "".join(pieces) == saved.content != ""

    whole = await _post(client, made.secret, local_model.model_id)
    answer = json.loads(whole.content)
    latest = await database_sync_to_async(Message.objects.filter(role=Role.ASSISTANT).latest)("id")
    assert whole.status_code == 200 and answer["choices"][0]["message"]["content"] == latest.content
