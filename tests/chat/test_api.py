"""The OpenAI-compatible API against the live server (daphne, the bundled model), driven by
the real ``openai`` SDK and by ``curl``, as the tools people point at it would."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import timedelta

import openai  # noqa: TID253 (the SDK is what these tests drive; no web process imports this)
import pytest
from channels.testing import ChannelsLiveServerTestCase
from django.db import connections
from django.test import override_settings
from django.utils import timezone

import tests.browser.base  # noqa: F401  (its fork hook: the server's child gets a fresh executor)
from accounts.api_keys import api_key_create, api_key_revoke
from accounts.models import ApiKey, ApiKeyScope, InstanceSettings, User
from billing.models import Plan
from chat.api import completion_request_parse
from chat.models import ACTIVE_STATUSES, Conversation, Message, MessageStatus, Role
from localai_site.core.refusals import Refusal
from models_hub.services import bundled_model_register
from tests.chat.conftest import make_cloud_provider
from tests.conftest import PASSWORD
from tests.servers import MisbehavingProvider
from tests.waiting import wait_until

MAX_TOKENS = 24
QUESTION = "Name three colours."


@override_settings(CHAT_MAX_TOKENS=MAX_TOKENS)
class ApiTests(ChannelsLiveServerTestCase):
    @classmethod
    def setUpClass(cls):
        # No SQLite connection may cross the fork into the server: the child closing its copy
        # drops the locks that tell this process it is not the last reader, and the WAL this
        # process then resets leaves the server reading a database frozen in time.
        connections.close_all()
        super().setUpClass()

    def setUp(self):
        self.model = bundled_model_register()
        self.person = User.objects.create_user("ann@example.com", PASSWORD)
        self.key = api_key_create(user=self.person, name="my script")
        self.base_url = f"{self.live_server_url}/v1"

    def tearDown(self):
        wait_until(
            lambda: not Message.objects.filter(status__in=ACTIVE_STATUSES).exists(),
            timeout=120,
            every=0.2,
            what="the replies this test left running to end",
        )

    def client_for(self, secret: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=secret, max_retries=0, timeout=120)

    def ask(self, secret: str, **extra):
        return self.client_for(secret).chat.completions.create(
            model=extra.pop("model", self.model.model_id),
            messages=[{"role": "user", "content": QUESTION}],
            **extra,
        )

    def cloud_fake(self) -> tuple[MisbehavingProvider, str]:
        fake = MisbehavingProvider()
        self.addCleanup(fake.stop)
        make_cloud_provider("fake", fake.base_url, "sk-fake-provider-key", "echo")
        return fake, "cloud:fake/echo"

    def test_a_reply_comes_whole_with_usage_and_stays_in_the_persons_history(self):
        answer = self.ask(self.key.secret)

        reply = Message.objects.get(role=Role.ASSISTANT)
        assert answer.object == "chat.completion"
        assert answer.choices[0].message.content == reply.content != ""
        assert answer.choices[0].finish_reason in {"stop", "length"}
        assert answer.usage.completion_tokens == reply.completion_tokens > 0
        assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
        assert answer.usage.prompt_tokens_details.cached_tokens == reply.cached_tokens
        conversation = Conversation.objects.get()
        assert conversation.owner == self.person
        assert conversation.title == QUESTION
        assert [m.content for m in conversation.messages.order_by("id")][0] == QUESTION
        key = ApiKey.objects.get()
        assert key.last_used_at is not None and key.last_used_ip == "127.0.0.1"

    def test_a_streamed_reply_arrives_in_pieces_that_make_the_saved_text_then_its_usage(self):
        stream = self.ask(self.key.secret, stream=True, stream_options={"include_usage": True})
        chunks = list(stream)

        pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
        reply = Message.objects.get(role=Role.ASSISTANT)
        assert reply.status == MessageStatus.DONE
        assert "".join(pieces) == reply.content != ""
        assert len([p for p in pieces if p]) > 1  # streamed as written, not in one piece at the end
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == reply.completion_tokens
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in {"stop", "length"}

    def test_sampling_parameters_reach_the_model(self):
        first = self.ask(self.key.secret, temperature=0, max_tokens=5, seed=7)
        short = Message.objects.filter(role=Role.ASSISTANT).latest("id")
        assert short.sampling == {"temperature": 0.0, "max_tokens": 5, "seed": 7}
        assert first.usage.completion_tokens <= 5 and first.choices[0].finish_reason == "length"
        whole = self.ask(self.key.secret, temperature=0).choices[0].message.content
        word = whole.split()[1]
        stopped = self.ask(self.key.secret, temperature=0, stop=[word]).choices[0].message.content
        assert word not in stopped and whole.startswith(stopped.rstrip())

    def test_curl_receives_server_sent_events_ending_with_done(self):
        curl = shutil.which("curl")
        if curl is None:
            pytest.skip("curl is not installed")
        body = {
            "model": self.model.model_id,
            "messages": [{"role": "user", "content": QUESTION}],
            "stream": True,
        }
        result = subprocess.run(
            [curl, "-sS", "-N", f"{self.base_url}/chat/completions",
             "-H", f"Authorization: Bearer {self.key.secret}", "-H", "Content-Type: application/json",
             "-d", json.dumps(body)],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        events = [block for block in result.stdout.split("\n\n") if block]
        assert all(block.startswith("data: ") for block in events)
        assert events[-1] == "data: [DONE]"
        chunks = [json.loads(block[6:]) for block in events[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert text == Message.objects.get(role=Role.ASSISTANT).content
        models = subprocess.run(
            [curl, "-sS", f"{self.base_url}/models", "-H", f"Authorization: Bearer {self.key.secret}"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert [m["id"] for m in json.loads(models.stdout)["data"]] == [self.model.model_id]

    def test_refusals_come_in_openais_shape_with_the_status_its_sdk_expects(self):
        with pytest.raises(openai.AuthenticationError) as unknown:
            self.ask("lai_not-a-key-of-anyone-here")
        assert unknown.value.status_code == 401 and unknown.value.code == "invalid_api_key"
        with pytest.raises(openai.NotFoundError) as missing:
            self.ask(self.key.secret, model="local:no-such-model")
        assert "not available" in missing.value.message
        with pytest.raises(openai.BadRequestError) as bad:
            self.ask(self.key.secret, temperature=5)
        assert bad.value.body["message"] == "'temperature' must be a number from 0 to 2."
        assert bad.value.body["type"] == "invalid_request_error"
        self.person.processing_restricted = True
        self.person.save()
        with pytest.raises(openai.PermissionDeniedError) as restricted:
            self.ask(self.key.secret)
        assert restricted.value.code == "restricted"
        assert not Conversation.objects.exists()  # nothing of a refused request is kept

    def test_revoked_expired_and_read_only_keys_cannot_chat(self):
        read_only = api_key_create(user=self.person, name="lister", scope=ApiKeyScope.MODELS)
        assert [m.id for m in self.client_for(read_only.secret).models.list()] == [self.model.model_id]
        with pytest.raises(openai.PermissionDeniedError) as scope:
            self.ask(read_only.secret)
        assert scope.value.code == "insufficient_scope"
        expiring = api_key_create(
            user=self.person, name="soon", expires_at=timezone.now() + timedelta(days=1)
        )
        ApiKey.objects.filter(pk=expiring.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        api_key_revoke(key=self.key.key)
        for secret, said in [(self.key.secret, "revoked"), (expiring.secret, "expired")]:
            with pytest.raises(openai.AuthenticationError) as refused:
                self.client_for(secret).models.list()
            assert said in refused.value.message
        assert not Conversation.objects.exists()

    def test_an_admin_can_turn_the_api_off(self):
        InstanceSettings.objects.update_or_create(pk=1, defaults={"api_enabled": False})
        with pytest.raises(openai.PermissionDeniedError) as off:
            self.client_for(self.key.secret).models.list()
        assert off.value.code == "api_off"

    def test_a_local_only_key_never_reaches_a_cloud_model(self):
        fake, cloud_model = self.cloud_fake()
        local_key = api_key_create(user=self.person, name="private", local_only=True)
        assert [m.id for m in self.client_for(local_key.secret).models.list()] == [self.model.model_id]
        with pytest.raises(openai.PermissionDeniedError) as refused:
            self.ask(local_key.secret, model=cloud_model)
        assert refused.value.code == "local_only_key"
        assert fake.requests == []
        # The same person's other key may: the fake above would have heard it.
        echoed = self.ask(self.key.secret, model=cloud_model).choices[0].message.content
        assert echoed == QUESTION and len(fake.requests) == 1
        assert Message.objects.get(role=Role.ASSISTANT).provider == "fake"

    def test_a_tool_that_hangs_up_stops_its_reply_and_keeps_what_was_written(self):
        fake = MisbehavingProvider(interval=0.2, tokens=100)  # twenty seconds of reply
        self.addCleanup(fake.stop)
        make_cloud_provider("paced", fake.base_url, "sk-fake-provider-key", "paced")
        stream = self.ask(self.key.secret, model="cloud:paced/paced", stream=True)
        assert next(c for c in stream if c.choices and c.choices[0].delta.content).choices[0].delta.content
        stream.close()
        reply = wait_until(
            lambda: Message.objects.filter(role=Role.ASSISTANT, status=MessageStatus.STOPPED).first(),
            timeout=10,
            what="the reply to stop",
        )
        assert reply.content.startswith("w0 ") and len(reply.content.split()) < 100

    def test_the_plans_quota_applies_to_the_api(self):
        _, cloud_model = self.cloud_fake()
        Plan.objects.create(name="Free", slug="free", is_default=True, cloud_messages_per_day=0)
        with pytest.raises(openai.RateLimitError) as refused:
            self.ask(self.key.secret, model=cloud_model)
        assert refused.value.code == "quota_exceeded"

    def test_a_key_that_keeps_no_history_leaves_no_conversation(self):
        forgetful = api_key_create(user=self.person, name="no history", keep_history=False)
        streamed = "".join(
            c.choices[0].delta.content or "" for c in self.ask(forgetful.secret, stream=True) if c.choices
        )
        whole = self.ask(forgetful.secret).choices[0].message.content
        assert streamed == whole != ""  # greedy: the same words twice
        wait_until(lambda: not Conversation.objects.exists(), timeout=10, what="the API chats to be deleted")


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"{not json", "The body must be JSON."),
        (b"[]", "The body must be a JSON object."),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "'model' is required"),
        (b'{"model": "m", "messages": []}', "'messages' must be a non-empty list."),
        (b'{"model": "m", "messages": [{"role": ["user"], "content": "hi"}]}', "messages[0].role must be"),
        (b'{"model": "m", "messages": [{"role": "user", "content": 3}]}', "messages[0].content must be"),
        (b'{"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]}', "'n': 1"),
        (
            b'{"model": "m", "top_p": true, "messages": [{"role": "user", "content": "hi"}]}',
            "'top_p' must be",
        ),
        (
            b'{"model": "m", "stop": ["a","b","c","d","e"], "messages": [{"role": "user", "content": "hi"}]}',
            "'stop' must be",
        ),  # fmt: skip
        (b'{"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}', "'max_tokens'"),
    ],
)
def test_a_malformed_request_is_refused_naming_what_is_wrong(body, said):
    with pytest.raises(Refusal) as refused:
        completion_request_parse(body)
    assert said in refused.value.message and refused.value.code == "bad_request"


def test_a_request_keeps_only_the_sampling_it_names():
    parsed = completion_request_parse(
        json.dumps(
            {
                "model": "local:m",
                "messages": [
                    {"role": "developer", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                ],
                "max_completion_tokens": 9,
                "stop": "\n",
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ).encode()
    )
    assert parsed.sampling == {"max_tokens": 9, "stop": ["\n"]}
    assert [(t.role, t.content) for t in parsed.turns] == [(Role.SYSTEM, "Be brief."), (Role.USER, "Hi")]
    assert parsed.stream and parsed.include_usage
