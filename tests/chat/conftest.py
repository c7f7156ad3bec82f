from pathlib import Path

import pytest

from chat.models import CloudModel, CloudProvider, CloudProviderKind
from chat.services import cloud_provider_save
from tests.servers import API_KEY, LlamaServer, MisbehavingProvider


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    """Files the tests store land in the test's own folder, never in the data directory."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(scope="session")
def llama_server():
    server = LlamaServer()
    yield server
    server.stop()


@pytest.fixture
def misbehaving_server():
    server = MisbehavingProvider()
    yield server
    server.stop()


def make_cloud_provider(slug: str, base_url: str, api_key: str, *models: str) -> CloudProvider:
    provider = cloud_provider_save(
        provider=CloudProvider(
            slug=slug, name=slug.title(), kind=CloudProviderKind.CUSTOM, base_url=base_url
        ),
        api_key=api_key,
    )
    for name in models:
        CloudModel.objects.create(provider=provider, name=name, enabled=True, context_length=4096)
    return provider


@pytest.fixture
def loopback_provider(db, llama_server):
    from tests.servers import LLAMA_ALIAS

    return make_cloud_provider("loopback", llama_server.base_url, API_KEY, LLAMA_ALIAS)
