import pytest


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
