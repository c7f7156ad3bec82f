"""Two-factor sign-in: who the instance requires it of, where those without it are sent, the
sign-in step that asks for a code, and what export and erasure do with the authenticators."""

from __future__ import annotations

import json
import zipfile

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from allauth.mfa.webauthn.internal.auth import WebAuthn
from cryptography.fernet import Fernet
from django.test import Client

from accounts.adapters import MfaAdapter
from accounts.mfa import mfa_missing, mfa_requirement_covers
from accounts.models import InstanceSettings, MfaRequirement
from localai_site.core.crypto import secret_decrypt, secrets_rotate
from localai_site.core.privacy import user_erase, user_export
from tests.conftest import PASSWORD
from tests.second_factors import passkey_registration, totp_code

pytestmark = pytest.mark.django_db


def mfa_require(requirement: MfaRequirement) -> None:
    settings_row = InstanceSettings.load()
    settings_row.mfa_required = requirement
    settings_row.save()


def password_sign_in(client: Client, email: str) -> None:
    """Signed in, and the password entered again: allauth asks for it before a factor is added."""
    client.post("/accounts/login/", {"login": email, "password": PASSWORD})
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})


def totp_activate(user) -> str:
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return secret


@pytest.mark.parametrize(
    ("requirement", "staff", "covered"),
    [
        (MfaRequirement.NOBODY, True, False),
        (MfaRequirement.NOBODY, False, False),
        (MfaRequirement.STAFF, True, True),
        (MfaRequirement.STAFF, False, False),
        (MfaRequirement.EVERYONE, True, True),
        (MfaRequirement.EVERYONE, False, True),
    ],
)
def test_the_requirement_covers_staff_or_everyone(make_user, requirement, staff, covered):
    assert mfa_requirement_covers(requirement, make_user(is_staff=staff)) is covered


def test_only_an_app_or_a_passkey_counts_as_a_second_factor(make_user):
    mfa_require(MfaRequirement.EVERYONE)
    person = make_user()
    RecoveryCodes.activate(person)  # codes stand in for a factor; they are not one
    assert mfa_missing(person)
    WebAuthn.add(person, "Phone", {})
    assert not mfa_missing(person)


def test_staff_without_a_second_factor_are_sent_to_set_one_up_and_kept_out_of_the_admin(make_user):
    mfa_require(MfaRequirement.STAFF)
    staff = make_user("staff@example.com", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)

    answer = client.get("/admin/", follow=True)
    assert answer.redirect_chain == [("/accounts/2fa/", 302)]
    assert "The admin opens only for staff with two-factor sign-in" in answer.content.decode()
    answer = client.get("/", follow=True)
    assert answer.redirect_chain == [("/accounts/2fa/", 302)]
    assert "Two-factor sign-in is required for your account" in answer.content.decode()
    # What stays open: the setup, signing out, the policy, the person's privacy rights.
    assert client.get("/accounts/2fa/").status_code == 200
    assert client.get("/privacy/").status_code == 200
    assert client.get("/settings/privacy/").status_code == 200
    assert client.get("/accounts/logout/").status_code == 200

    totp_activate(staff)
    assert client.get("/admin/").status_code == 200


def test_people_are_sent_too_only_when_everyone_must(make_user):
    person = make_user()
    client = Client()
    client.force_login(person)
    mfa_require(MfaRequirement.STAFF)
    assert client.get("/settings/profile/").status_code == 200
    mfa_require(MfaRequirement.EVERYONE)
    assert client.get("/settings/profile/")["Location"] == "/accounts/2fa/"


def test_signing_in_asks_for_the_code_and_a_recovery_code_works_once(make_user):
    person = make_user("ann@example.com")
    secret = totp_activate(person)
    codes = RecoveryCodes.activate(person).generate_codes()
    client = Client()

    answer = client.post("/accounts/login/", {"login": "ann@example.com", "password": PASSWORD})
    assert answer["Location"] == "/accounts/2fa/authenticate/"
    assert "_auth_user_id" not in client.session  # not signed in before the second step
    answer = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert "Incorrect code" in answer.content.decode() and "_auth_user_id" not in client.session
    answer = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert answer.status_code == 302 and client.session["_auth_user_id"] == str(person.pk)

    for attempt in ("first", "second"):
        client = Client()
        client.post("/accounts/login/", {"login": "ann@example.com", "password": PASSWORD})
        client.post("/accounts/2fa/authenticate/", {"code": codes[0]})
        assert ("_auth_user_id" in client.session) is (attempt == "first"), attempt


def test_the_last_second_factor_stays_while_the_instance_requires_one(make_user):
    person = make_user()
    TOTP.activate(person, generate_totp_secret())
    app = Authenticator.objects.get(user=person, type=Authenticator.Type.TOTP)
    adapter = MfaAdapter()
    assert adapter.can_delete_authenticator(app)
    mfa_require(MfaRequirement.EVERYONE)
    assert not adapter.can_delete_authenticator(app)
    WebAuthn.add(person, "Phone", {})
    assert adapter.can_delete_authenticator(app)


def test_export_says_which_factors_exist_never_their_secrets_and_erasure_removes_them(make_user, tmp_path):
    person = make_user()
    secret = totp_activate(person)
    codes = RecoveryCodes.activate(person).generate_codes()
    WebAuthn.add(person, "Phone", {"id": "credential-id-of-the-phone"})

    user_export(user=person, destination=tmp_path / "export.zip")
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        raw = archive.read("sign_in_factors.json").decode()
    factors = json.loads(raw)
    assert sorted(f["type"] for f in factors) == ["recovery_codes", "totp", "webauthn"]
    assert all(set(f) == {"type", "created_at", "last_used_at"} for f in factors)
    assert secret not in raw and codes[0] not in raw and "credential-id" not in raw

    counts = user_erase(user=person)
    assert counts["mfa.Authenticator"] == 3
    assert not Authenticator.objects.exists()


def test_a_passkey_is_added_named_renamed_and_removed(make_user):
    person = make_user("ann@example.com")
    client = Client(HTTP_HOST="localhost")  # a passkey's site is a host name: localhost over HTTP
    password_sign_in(client, "ann@example.com")

    page = client.get("/accounts/2fa/webauthn/add/")
    challenge = page.context["js_data"]["creation_options"]["publicKey"]["challenge"]
    credential = passkey_registration(challenge=challenge)
    answer = client.post(
        "/accounts/2fa/webauthn/add/",
        {"name": "Work laptop", "passwordless": "on", "credential": json.dumps(credential)},
    )
    assert answer["Location"] == "/accounts/2fa/recovery-codes/"  # made with the first factor
    passkey = Authenticator.objects.get(user=person, type=Authenticator.Type.WEBAUTHN)
    assert passkey.wrap().name == "Work laptop" and passkey.wrap().is_passwordless
    mfa_require(MfaRequirement.EVERYONE)
    assert not mfa_missing(person)
    assert "Work laptop" in client.get("/accounts/2fa/webauthn/").content.decode()

    client.post(f"/accounts/2fa/webauthn/keys/{passkey.pk}/edit/", {"name": "Old laptop"})
    passkey.refresh_from_db()
    assert passkey.wrap().name == "Old laptop"
    client.post(f"/accounts/2fa/webauthn/keys/{passkey.pk}/remove/")
    assert not Authenticator.objects.filter(type=Authenticator.Type.WEBAUTHN).exists()
    assert client.get("/")["Location"] == "/accounts/2fa/"  # required, and none is left


def test_a_registration_for_another_challenge_is_refused(make_user):
    make_user("ann@example.com")
    client = Client(HTTP_HOST="localhost")
    password_sign_in(client, "ann@example.com")
    client.get("/accounts/2fa/webauthn/add/")
    answer = client.post(
        "/accounts/2fa/webauthn/add/", {"name": "Phone", "credential": json.dumps(passkey_registration())}
    )
    assert answer.status_code == 200 and "Incorrect code" in answer.content.decode()
    assert not Authenticator.objects.exists()


def test_app_keys_and_recovery_seeds_are_stored_encrypted_and_rotated_with_the_other_secrets(
    make_user, settings
):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    person = make_user()
    secret = totp_activate(person)
    codes = RecoveryCodes.activate(person).generate_codes()
    stored = {a.type: a.data for a in Authenticator.objects.filter(user=person)}
    assert secret not in json.dumps(stored) and secret_decrypt(stored["totp"]["secret"]) == secret

    settings.ENCRYPTION_KEYS = [new, old]
    assert secrets_rotate() == 2
    settings.ENCRYPTION_KEYS = [new]
    app = Authenticator.objects.get(user=person, type=Authenticator.Type.TOTP).wrap()
    assert app.validate_code(totp_code(secret))
    assert Authenticator.objects.get(user=person, type="recovery_codes").wrap().generate_codes() == codes


def test_admins_see_who_has_which_factor_never_its_data_and_can_delete_it(make_user):
    root = make_user("root@example.com", is_staff=True, is_superuser=True)
    totp_activate(root)
    person = make_user("ann@example.com")
    totp_activate(person)
    app = Authenticator.objects.get(user=person)
    client = Client()
    client.force_login(root)

    page = client.get(f"/admin/mfa/authenticator/{app.pk}/change/").content.decode()
    assert "ann@example.com" in page and app.data["secret"] not in page and 'name="data"' not in page
    client.post(f"/admin/mfa/authenticator/{app.pk}/delete/", {"post": "yes"})
    assert not Authenticator.objects.filter(user=person).exists()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_socket_opens_only_once_a_required_second_factor_is_set_up(make_user):
    from channels.db import database_sync_to_async

    from chat.models import Conversation
    from models_hub.services import bundled_model_register
    from tests.chat.socket_client import ChatSocket, session_cookie_for

    def prepare():
        staff = make_user("ops@example.com", is_staff=True)
        model = bundled_model_register()
        conversation = Conversation.objects.create(owner=staff, model=model.model_id)
        mfa_require(MfaRequirement.STAFF)
        return staff, conversation, session_cookie_for(staff)

    staff, conversation, cookie = await database_sync_to_async(prepare)()
    connected, code = await ChatSocket(conversation.pk, cookie).connect()
    assert not connected and code == 4401, "a password alone streams no chat"
    await database_sync_to_async(totp_activate)(staff)
    socket = ChatSocket(conversation.pk, cookie)
    connected, _ = await socket.connect()
    assert connected
    await socket.communicator.disconnect()
