from __future__ import annotations

import itertools
import os

import pytest
from django.conf import settings

from accounts.models import User
from chat.models import Conversation
from localai_site.core.queues import Queue
from localai_site.core.tasks import tasks_wait_idle
from models_hub.models import LocalModel
from models_hub.services import bundled_model_register

PASSWORD = "a long enough passphrase"
_emails = itertools.count(1)


def pytest_collection_modifyitems(config, items):
    """Scaled tests need REDIS_URL (``make test`` runs them in a second pass)."""
    if settings.SCALED:
        return
    kept, deselected = [], []
    for item in items:
        (deselected if item.get_closest_marker("scaled") else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(autouse=True)
def _no_generation_outlives_its_test():
    """A reply some test left being written in this process would hold a slot of the local
    model and write into the next test's database: wait for the local pool to be idle."""
    yield
    tasks_wait_idle(Queue.LOCAL, timeout=180)


@pytest.fixture
def make_user(db):
    def make(email: str | None = None, **extra) -> User:
        return User.objects.create_user(email or f"person{next(_emails)}@example.com", PASSWORD, **extra)

    return make


@pytest.fixture
def admin(make_user) -> User:
    """The instance's admin: while there is none, only the setup token lets anyone sign up."""
    return make_user("admin@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def user(make_user) -> User:
    return make_user("ann@example.com", display_name="Ann")


@pytest.fixture
def other_user(make_user) -> User:
    return make_user("bob@example.com", display_name="Bob")


@pytest.fixture
def local_model(db) -> LocalModel:
    return bundled_model_register()


@pytest.fixture
def make_conversation(local_model):
    def make(owner: User, **extra) -> Conversation:
        return Conversation.objects.create(owner=owner, model=local_model.model_id, **extra)

    return make


@pytest.fixture
def conversation(make_conversation, user) -> Conversation:
    return make_conversation(user)


@pytest.fixture
def short_replies(settings):
    """Replies short enough to keep a test quick, still real model output."""
    settings.CHAT_MAX_TOKENS = int(os.environ.get("TEST_MAX_TOKENS", "24"))
    return settings
