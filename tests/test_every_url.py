"""Every URL the app routes, the admin's and allauth's included, opened with GET by each kind
of visitor: none may answer a server error. The URLs come from the resolver, so a new page
is tried the day it is added; its ids come from real rows made here."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
from allauth.account.forms import default_token_generator
from allauth.account.models import EmailAddress, EmailConfirmationHMAC
from allauth.account.utils import user_pk_to_url_str
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.webauthn.internal.auth import WebAuthn
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django.contrib import admin
from django.contrib.admin import ModelAdmin
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RegexPattern
from django.utils import timezone

from accounts.api_keys import api_key_create
from accounts.models import CrashReport, CrashSource, DataSubjectRequest, Invitation, RequestKind, User
from accounts.selectors import instance_settings_get
from accounts.services import data_request_save, export_build, export_request, policy_publish
from billing.models import Invoice, Plan
from billing.services import plan_assign
from chat.models import (
    CloudModel,
    CloudProvider,
    CloudProviderKind,
    GeneratedImage,
    ImageGeneration,
    ImageStatus,
    Message,
    Persona,
    Role,
)
from chat.services import cloud_provider_save, upload_save
from models_hub.permissions import MANAGE_MODELS
from tests.files import image_bytes, uploaded
from tests.second_factors import passkey_registration

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "person", "staff", "superuser"]
# A URL's parameters: named groups in regexes, converters in routes (``<uuid:conversation_id>``).
_PARAM = re.compile(r"\(\?P<(\w+)>[^)]*\)|<(?:\w+:)?(\w+)>")
# A few pages every walk must find, so that a broken walk cannot pass by trying nothing.
EXPECTED = {
    "/personas/",
    "/accounts/login/",
    "/hub/",
    "/images/",
    "/admin/",
    "/admin/analytics/",
    "/admin/operations/",
    "/admin/chat/conversation/",
    "/admin/chat/conversation/add/",
}


@dataclass(frozen=True)
class Route:
    template: str  # "/c/<uuid:conversation_id>/", or the regex without its anchors
    name: str
    view: Callable


def _piece(pattern: URLPattern | URLResolver) -> str:
    text = str(pattern.pattern)
    if isinstance(pattern.pattern, RegexPattern):
        text = text.removeprefix("^").removesuffix("$")
    return text


def routes(patterns=None, prefix: str = "/", namespace: str = "") -> Iterator[Route]:
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        template = prefix + _piece(pattern)
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from routes(pattern.url_patterns, template, inner)
        else:
            yield Route(template, f"{namespace}{pattern.name or template}", pattern.callback)


def _model_admin_of(view) -> ModelAdmin | None:
    """The ModelAdmin a view belongs to, through the wrappers the admin puts around it."""
    while view is not None:
        owner = getattr(view, "model_admin", None) or getattr(view, "__self__", None)
        if isinstance(owner, ModelAdmin):
            return owner
        view = getattr(view, "__wrapped__", None)
    return None


@dataclass
class Site:
    people: dict[str, User]
    values: dict[str, list[str]]  # what fills a URL parameter of that name
    by_url_name: dict[str, dict[str, list[str]]]  # where one URL needs another value

    def fillings(self, route: Route) -> tuple[list[str], str | None]:
        """The URLs that open ``route`` with real ids, or why it cannot be opened."""
        names = [group or converted for group, converted in _PARAM.findall(route.template)]
        model_admin = _model_admin_of(route.view)
        choices = []
        for name in names:
            if model_admin is not None and name in ("object_id", "id"):
                row = model_admin.model._default_manager.first()
                if row is None:
                    return [], f"no {model_admin.model._meta.label} row to open: make one in `site`"
                choices.append([str(row.pk)])
            elif (value := self.by_url_name.get(route.name, {}).get(name, self.values.get(name))) is not None:
                choices.append(value)
            else:
                return [], f"nothing fills <{name}>: add it to `site`"
        return [_filled(route.template, values) for values in itertools.product(*choices)], None


def _filled(template: str, values: tuple[str, ...]) -> str:
    given = iter(values)
    return _PARAM.sub(lambda _: next(given), template)


@pytest.fixture
def site(
    settings, tmp_path, make_user, local_model, make_conversation, django_capture_on_commit_callbacks
) -> Site:
    """A row of each kind the app shows, owned by one person, and the people who visit."""
    settings.MEDIA_ROOT = tmp_path / "media"
    person = make_user("person@example.com", display_name="Pat")
    staff = make_user("staff@example.com", is_staff=True)
    # Staff who may look at everything and run the hub and data requests, but change little.
    staff.user_permissions.set(
        Permission.objects.filter(codename__startswith="view_")
        | Permission.objects.filter(codename__in=[MANAGE_MODELS.split(".")[1], "handle_data_requests"])
    )
    superuser = make_user("root@example.com", is_staff=True, is_superuser=True)

    conversation = make_conversation(person, title="Trip plans")
    Message.objects.create(conversation=conversation, role=Role.USER, content="Where to go?")
    Message.objects.create(conversation=conversation, role=Role.ASSISTANT, content="**Lisbon**.")
    upload = upload_save(owner=person, conversation=conversation, file=uploaded("notes.txt"))
    persona = Persona.objects.create(owner=person, name="Guide", system_prompt="Be a travel guide.")
    with django_capture_on_commit_callbacks():  # built here, not by the task queue
        export = export_request(user=person)
    export_build(archive_id=export.pk)
    export.refresh_from_db()
    policy = policy_publish(body="We keep little.", summary="", significant=False, published_by=superuser)
    provider = cloud_provider_save(
        provider=CloudProvider(
            slug="acme", name="Acme", kind=CloudProviderKind.CUSTOM, base_url="http://127.0.0.1:9/v1"
        ),
        api_key="sk-test-0123456789",
    )
    CloudModel.objects.create(provider=provider, name="acme-small", enabled=True)
    CloudModel.objects.create(provider=provider, name="acme-image", enabled=True, makes_images=True)
    generation = ImageGeneration.objects.create(
        owner=person, prompt="A lighthouse", size="1024x1024", model="cloud:acme/acme-image", provider="acme",
        status=ImageStatus.DONE,
    )  # fmt: skip
    image = GeneratedImage(
        owner=person, generation=generation, content_type="image/png", width=8, height=8, size=1
    )
    image.file.save("image.png", ContentFile(image_bytes("PNG")), save=True)
    address = EmailAddress.objects.create(user=person, email=person.email, primary=True, verified=False)
    social_app = SocialApp.objects.create(provider="google", name="Google", client_id="cid", secret="s")
    social_account = SocialAccount.objects.create(user=person, provider="google", uid="uid-1")
    SocialToken.objects.create(app=social_app, account=social_account, token="token-1")
    Invitation.objects.create(email="friend@example.com", created_by=superuser)
    data_request_save(request=DataSubjectRequest(kind=RequestKind.ACCESS, subject=person))
    CrashReport.objects.create(
        source=CrashSource.WEB, logger="django.request", exception_type="builtins.ValueError",
        message="bad", traceback="Traceback", fingerprint="0" * 40, release="test",
    )  # fmt: skip
    Group.objects.create(name="Model keepers")
    api_key = api_key_create(user=person, name="editor").key
    passkey = WebAuthn.add(person, "Phone", passkey_registration()).instance
    RecoveryCodes.activate(person)
    instance_settings_get()
    plan_assign(user=person, plan=Plan.objects.get_or_create(slug="free", defaults={"name": "Free"})[0])
    Invoice.objects.create(
        user=person, stripe_invoice_id="in_1", created_at=timezone.now(), amount=900, currency="eur",
        status="paid", hosted_invoice_url="https://invoice.stripe.test/i/in_1", state_at=timezone.now(),
    )  # fmt: skip

    return Site(
        people={"person": person, "staff": staff, "superuser": superuser},
        values={
            "conversation_id": [str(conversation.pk)],
            "upload_id": [str(upload.pk)],
            "generation_id": [str(generation.pk)],
            "image_id": [str(image.pk)],
            "persona_id": [str(persona.pk)],
            "export_id": [str(export.pk)],
            "key_id": [str(api_key.pk)],
            "token": [export.token],
            "version": [str(policy.version)],
            "slug": [local_model.slug],
            "key": [EmailConfirmationHMAC(address).key],
            "uidb36": [user_pk_to_url_str(person)],
            "app_label": sorted({model._meta.app_label for model in admin.site._registry}),
            "content_type_id": [str(ContentType.objects.get_for_model(conversation).pk)],
            "object_id": [str(conversation.pk)],
            "url": ["no-such-page/"],
        },
        by_url_name={
            "account_reset_password_from_key": {"key": [default_token_generator.make_token(person)]},
            "mfa_edit_webauthn": {"pk": [str(passkey.pk)]},
            "mfa_remove_webauthn": {"pk": [str(passkey.pk)]},
        },
    )


def _listing(opened: dict[str, HttpResponse]) -> str:
    return "\n".join(f"{response.status_code} {url}" for url, response in opened.items())


def walk(site: Site, role: str) -> dict[str, HttpResponse]:
    """Every route opened with GET as ``role``, with the ids ``site`` made: the answers by URL."""
    client = Client(raise_request_exception=False)
    if role != "anonymous":
        client.force_login(site.people[role])
    opened, unopened = {}, []
    for route in routes():
        urls, why = site.fillings(route)
        if why:
            unopened.append(f"{route.template} ({route.name}): {why}")
        for url in urls:
            if resolve(url).func is not route.view:
                if url != route.template:  # a fixed route shadowed by an earlier one is unreachable
                    unopened.append(f"{url} reaches another view than {route.name}")
                continue
            opened[url] = client.get(url)
            if role != "anonymous" and not client.session.get("_auth_user_id"):
                client.force_login(site.people[role])  # another person's link signs one out
    assert not unopened, "routes this test could not open:\n" + "\n".join(unopened)
    assert set(opened) >= EXPECTED, f"the walk missed pages; tried:\n{_listing(opened)}"
    return opened


@pytest.mark.parametrize("role", ROLES)
def test_no_page_answers_a_server_error(site, role):
    opened = walk(site, role)
    broken = [f"{answer.status_code} {url}" for url, answer in opened.items() if answer.status_code >= 500]
    listing = _listing(opened)
    assert not broken, f"server errors as {role}:\n" + "\n".join(broken) + f"\n\nall tried:\n{listing}"


class _InlineCode(HTMLParser):
    """What a strict Content-Security-Policy would block in a page: inline scripts (a
    ``<script>`` without ``src`` that is not a data block), handler attributes (``onclick``),
    ``<style>`` elements and ``style`` attributes."""

    _DATA_TYPES = {"application/json", "application/ld+json"}

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "script" and "src" not in names and names.get("type") not in self._DATA_TYPES:
            self.found.append(f"an inline <script> at line {self.getpos()[0]}")
        if tag == "style":
            self.found.append(f"a <style> element at line {self.getpos()[0]}")
        for name, _ in attrs:
            if name.startswith("on") or name == "style":
                self.found.append(f"a {name}= attribute on <{tag}> at line {self.getpos()[0]}")


def _inline_code(response: HttpResponse) -> list[str]:
    if response.streaming or not response.get("Content-Type", "").startswith("text/html"):
        return []
    parser = _InlineCode()
    parser.feed(response.content.decode())
    return parser.found


@pytest.mark.parametrize("role", ROLES)
def test_every_page_allows_only_its_own_scripts_and_styles(site, role):
    """The policy a page is sent (script and style only from this site), and that every page
    keeps to it: what it blocks would be a broken page, as it would be an injected script."""
    opened = walk(site, role)
    # An image shown on its own gets a stricter policy of its own (sandboxed, no script at all).
    images = {
        url: r
        for url, r in opened.items()
        if r.get("Content-Type", "").startswith("image/")
        and not r.get("Content-Disposition", "").startswith("attachment")
    }
    assert all("sandbox" in r.get("Content-Security-Policy", "") for r in images.values()), images
    policies = {r.get("Content-Security-Policy") for url, r in opened.items() if url not in images}
    assert None not in policies, "pages answered without a Content-Security-Policy"
    assert len(policies) == 1, f"pages answered with different policies: {policies}"
    directives = dict(part.strip().split(" ", 1) for part in policies.pop().split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    blocked = [f"{url}: {what}" for url, response in opened.items() for what in _inline_code(response)]
    assert not blocked, "pages with code the policy blocks:\n" + "\n".join(blocked)
