"""The installable app: the web app manifest, the service worker that keeps the app shell (the
site's own static files and the offline page) and that offline page.

The worker never keeps a page, a conversation or an API answer: every navigation goes to the
network, and only one the network cannot answer gets the offline page. All three are served
at the app's root, under its script prefix (``LOCALAI_URL_PATH``, which sets
``FORCE_SCRIPT_NAME``), so the worker's scope is the whole app, and only it, on a sub-path too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from django.apps import apps
from django.contrib.staticfiles.finders import FileSystemFinder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import get_script_prefix, path, reverse
from django.views.decorators.http import require_safe

NAME = "LocalAI"
# The light theme's colours (static/css/app.css): the top bar's for the window's title bar,
# the page's for the splash screen while the app opens.
THEME_COLOR = "#ffffff"
BACKGROUND_COLOR = "#f7f7f8"
CACHE_PREFIX = "localai-shell-"
OFFLINE_TEMPLATE = "site/offline.html"
ICONS = [
    {"src": "site/icons/icon.svg", "sizes": "any", "type": "image/svg+xml", "purpose": "any"},
    {"src": "site/icons/icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any"},
    {"src": "site/icons/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any"},
    {
        "src": "site/icons/icon-maskable-512.png",
        "sizes": "512x512",
        "type": "image/png",
        "purpose": "maskable",
    },
]


@dataclass(frozen=True)
class Shell:
    urls: list[str]  # the offline page, then every static file of the site's own folders
    cache_name: str  # changes with any of their bytes: a new worker, the old cache deleted


def offline_page() -> str:
    """Rendered without a request: the same bytes for everyone, no name, no token."""
    return render_to_string(OFFLINE_TEMPLATE)


def app_shell() -> Shell:
    ignored = apps.get_app_config("staticfiles").ignore_patterns
    offline_url = reverse("app_shell:offline")
    digest = hashlib.sha256(offline_page().encode())
    urls = [offline_url]
    for name, storage in sorted(FileSystemFinder().list(ignored), key=lambda found: found[0]):
        prefix = getattr(storage, "prefix", None)
        url = static(f"{prefix}/{name}" if prefix else name)
        with storage.open(name) as file:
            digest.update(url.encode())
            digest.update(file.read())
        urls.append(url)
    return Shell(urls=urls, cache_name=f"{CACHE_PREFIX}{digest.hexdigest()[:16]}")


def manifest() -> dict:
    root = get_script_prefix()
    return {
        "id": root,
        "name": NAME,
        "short_name": NAME,
        "description": "Chat with AI models that run on this instance.",
        "start_url": reverse("chat:home"),
        "scope": root,
        "display": "standalone",
        "theme_color": THEME_COLOR,
        "background_color": BACKGROUND_COLOR,
        "icons": [{**icon, "src": static(icon["src"])} for icon in ICONS],
    }


@require_safe
def manifest_view(request: HttpRequest) -> HttpResponse:
    return JsonResponse(manifest(), content_type="application/manifest+json")


@require_safe
def service_worker_view(request: HttpRequest) -> HttpResponse:
    shell = app_shell()
    body = render_to_string(
        "site/service_worker.js",
        {
            "cache_name": json.dumps(shell.cache_name),
            "cache_prefix": json.dumps(CACHE_PREFIX),
            "shell_urls": json.dumps(shell.urls),
            "offline_url": json.dumps(shell.urls[0]),
        },
    )
    # no-cache: the browser asks each time whether the worker (and so the shell) changed.
    return HttpResponse(
        body, content_type="text/javascript; charset=utf-8", headers={"Cache-Control": "no-cache"}
    )


@require_safe
def offline_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(offline_page())


app_name = "app_shell"
urlpatterns = [
    path("manifest.webmanifest", manifest_view, name="manifest"),
    path("sw.js", service_worker_view, name="service_worker"),
    path("offline/", offline_view, name="offline"),
]
