"""The installable app (localai_site/app_shell.py): the manifest and the service worker are
served with the types and scope a browser needs, at the app's root on a sub-path too, and
the worker keeps only static files and the offline page, which holds nothing about anyone.
Chromium installs it and goes offline in tests/browser/test_installable_browser.py."""

from __future__ import annotations

import json
import re
from io import BytesIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.test import Client
from PIL import Image

from tests.asgi_client import asgi_get
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

APP_CSS = Path(settings.BASE_DIR) / "static" / "css" / "app.css"
OFFLINE_TEXT = "This instance can't be reached right now"


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def _shell_urls(worker: str) -> list[str]:
    return json.loads(re.search(r"const SHELL = new Set\((\[.*?\])\);", worker).group(1))


def _cache_name(worker: str) -> str:
    return re.search(r'const CACHE_NAME = "([^"]+)";', worker).group(1)


def _get_through_asgi(path: str, *, root_path: str = "") -> tuple[dict[str, str], str]:
    """A GET as daphne hands it to Django: the proxy's prefix in ``root_path`` and the path."""
    answer = asgi_get(get_asgi_application(), root_path + path, root_path=root_path)
    assert answer.status == 200, (path, answer.status)
    return {name: answer.header(name) for name in answer.headers}, answer.body


def test_the_manifest_makes_the_app_installable_with_its_icons():
    client = Client()
    response = client.get("/manifest.webmanifest")
    assert response["Content-Type"] == "application/manifest+json"
    manifest = json.loads(response.content)
    assert manifest["name"] == manifest["short_name"] == "LocalAI"
    assert manifest["display"] == "standalone"
    assert manifest["start_url"] == manifest["scope"] == manifest["id"] == "/"

    sizes = {}
    for icon in manifest["icons"]:
        served = client.get(icon["src"])
        assert served.status_code == 200, icon["src"]
        assert served["Content-Type"] == icon["type"]
        if icon["type"] == "image/png":
            with Image.open(BytesIO(_body(served))) as image:
                assert f"{image.width}x{image.height}" == icon["sizes"], icon["src"]
        sizes.setdefault(icon["purpose"], set()).add(icon["sizes"])
    assert sizes == {"any": {"any", "192x192", "512x512"}, "maskable": {"512x512"}}


def test_every_page_links_the_manifest_and_registers_the_worker_from_a_file():
    page = Client().get("/accounts/login/").content.decode()
    assert '<link rel="manifest" href="/manifest.webmanifest">' in page
    assert re.search(r'<script defer src="/static/site/install\.js" data-worker="/sw\.js"></script>', page)
    assert '<link rel="apple-touch-icon" href="/static/site/icons/apple-touch-icon.png">' in page


def test_the_worker_is_served_fresh_at_the_root_and_keeps_only_static_files_and_the_offline_page():
    client = Client()
    response = client.get("/sw.js")
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"  # or the browser would not see a new shell
    assert "Service-Worker-Allowed" not in response  # at the root, its default scope is the app

    urls = _shell_urls(response.content.decode())
    assert urls[0] == "/offline/"
    assert all(url.startswith(settings.STATIC_URL) for url in urls[1:]), urls
    assert {"/static/css/app.css", "/static/chat/chat.js", "/static/site/icons/icon-192.png"} <= set(urls)
    for url in urls:  # one missing file and the browser installs nothing
        assert client.get(url).status_code == 200, url


def test_the_offline_page_is_the_same_for_everyone_and_says_nothing_about_them(user):
    anonymous = Client().get("/offline/")
    signed_in = Client()
    signed_in.login(email=user.email, password=PASSWORD)
    theirs = signed_in.get("/offline/")
    assert theirs.content == anonymous.content
    page = theirs.content.decode()
    assert OFFLINE_TEXT in page
    assert re.search(r'<a class="button primary" href="">Try again</a>', page)
    assert user.email not in page and "Ann" not in page
    assert "csrfmiddlewaretoken" not in page and "Sign out" not in page


def test_a_changed_static_file_makes_a_new_worker_and_the_same_files_the_same_one(settings, tmp_path):
    settings.STATICFILES_DIRS = [tmp_path]
    (tmp_path / "app.css").write_text("body { color: black; }")
    client = Client()
    first = _cache_name(client.get("/sw.js").content.decode())
    assert _cache_name(client.get("/sw.js").content.decode()) == first

    (tmp_path / "app.css").write_text("body { color: navy; }")
    worker = client.get("/sw.js").content.decode()
    assert _cache_name(worker) != first
    assert _shell_urls(worker) == ["/offline/", "/static/app.css"]


@pytest.mark.parametrize("prefix_from", ["FORCE_SCRIPT_NAME", "the proxy's SCRIPT_NAME"])
def test_under_a_sub_path_the_worker_and_manifest_are_at_the_apps_root(settings, prefix_from):
    if prefix_from == "FORCE_SCRIPT_NAME":
        settings.FORCE_SCRIPT_NAME = "/ai"
    root_path = "/ai"

    headers, body = _get_through_asgi("/manifest.webmanifest", root_path=root_path)
    assert headers["content-type"] == "application/manifest+json"
    manifest = json.loads(body)
    assert manifest["start_url"] == manifest["scope"] == manifest["id"] == "/ai/"

    headers, worker = _get_through_asgi("/sw.js", root_path=root_path)
    assert headers["content-type"] == "text/javascript; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert _shell_urls(worker)[0] == "/ai/offline/"
    assert 'const OFFLINE_URL = "/ai/offline/";' in worker

    _, page = _get_through_asgi("/accounts/login/", root_path=root_path)
    assert '<link rel="manifest" href="/ai/manifest.webmanifest">' in page
    assert 'data-worker="/ai/sw.js"' in page


def _light_and_dark(name: str) -> tuple[str, str]:
    """A colour of static/css/app.css, ``--name: light-dark(#light, #dark)``."""
    found = re.search(
        rf"--{name}:\s*light-dark\((#[0-9a-f]+),\s*(#[0-9a-f]+)\)", APP_CSS.read_text(), re.IGNORECASE
    )
    return found.group(1), found.group(2)


def test_the_installed_apps_colours_are_the_pages_own():
    manifest = json.loads(Client().get("/manifest.webmanifest").content)
    panel, background = _light_and_dark("panel"), _light_and_dark("bg")
    assert manifest["theme_color"] == panel[0]  # the light theme's top bar
    assert manifest["background_color"] == background[0]

    page = Client().get("/accounts/login/").content.decode()
    meta = re.findall(
        r'<meta name="theme-color" content="([^"]+)" media="\(prefers-color-scheme: (\w+)\)">', page
    )
    assert sorted(meta) == sorted([(panel[0], "light"), (panel[1], "dark")])


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_a_person_who_chose_a_theme_gets_the_browser_bar_of_that_theme_whatever_the_device(make_user, theme):
    client = Client()
    client.force_login(make_user(theme=theme))
    page = client.get("/settings/profile/").content.decode()
    meta = re.findall(r'<meta name="theme-color"[^>]*>', page)
    light, dark = _light_and_dark("panel")
    assert meta == [f'<meta name="theme-color" content="{light if theme == "light" else dark}">']
