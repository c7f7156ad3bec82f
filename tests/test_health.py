import pytest

from localai_site.core.redis_client import redis_client
from tests.servers import free_port


def test_healthz_answers_json_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_probes_answer_whatever_host_name_the_prober_uses(client):
    assert client.get("/healthz", HTTP_HOST="web:8000").status_code == 200
    assert client.get("/", HTTP_HOST="web:8000").status_code == 400  # the app itself still checks


@pytest.mark.django_db
def test_readyz_in_embedded_mode_checks_the_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok" and response.json()["status"] == "ready"


@pytest.mark.django_db
def test_readyz_tells_only_this_machine_which_part_is_down(client, settings):
    settings.SCALED = True
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    redis_client.cache_clear()
    try:
        from_elsewhere = client.get("/readyz", REMOTE_ADDR="203.0.113.7")
        from_here = client.get("/readyz")  # the test client's address is 127.0.0.1
    finally:
        redis_client.cache_clear()
    assert (from_elsewhere.status_code, from_elsewhere.json()) == (503, {"status": "not ready"})
    assert from_here.status_code == 503
    assert from_here.json() == {"status": "not ready", "database": "ok", "redis": "down"}


@pytest.mark.django_db
def test_readyz_says_ready_to_anyone_and_no_more(client):
    response = client.get("/readyz", REMOTE_ADDR="2001:db8::7")
    assert (response.status_code, response.json()) == (200, {"status": "ready"})
