import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount, SocialApp
from allauth.socialaccount.providers import registry
from allauth.socialaccount.providers.google.provider import GoogleProvider
from allauth.socialaccount.providers.google.views import GoogleOAuth2Adapter
from django.core import mail
from django.core.cache import cache
from django.db.models.signals import post_save
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import Consent, ConsentPurpose, InstanceSettings, Invitation, SignupMode, User
from accounts.retention import retention_enforce
from accounts.setup_token import setup_token_issue, setup_token_matches, setup_token_pending
from localai_site.core.refusals import Refusal
from tests.conftest import PASSWORD
from tests.servers import FakeGoogle


def _signup(client, email, **query):
    url = reverse("account_signup")
    if query:
        client.get(url, query)  # an invitation link is opened first
    return client.post(
        url, {"email": email, "password1": PASSWORD, "password2": PASSWORD, "minimum_age": "on"}
    )


def _set_mode(mode):
    InstanceSettings.objects.update_or_create(pk=1, defaults={"signup_mode": mode})


@pytest.fixture(autouse=True)
def _own_data_folder(settings, tmp_path):
    settings.DATA_DIR = tmp_path  # where the setup token is kept


@pytest.fixture
def google(settings, monkeypatch):
    """Google sign-in configured as GOOGLE_CLIENT_ID does it (provider installed, routes
    added), talking to a fake of Google's token and profile endpoints on loopback."""
    registry.load()
    monkeypatch.setitem(registry.provider_map, GoogleProvider.id, GoogleProvider)
    settings.SOCIALACCOUNT_PROVIDERS = {
        "google": {"APPS": [{"client_id": "cid", "secret": "s"}], "SCOPE": ["email", "profile"]}
    }
    settings.ROOT_URLCONF = "tests.accounts.urls_with_google"
    fake = FakeGoogle()
    monkeypatch.setattr(GoogleOAuth2Adapter, "access_token_url", f"{fake.url}/token")
    monkeypatch.setattr(GoogleOAuth2Adapter, "identity_url", f"{fake.url}/userinfo")
    yield fake
    fake.stop()


def _sign_in_with_google(client, google, email, uid="google-1"):
    """The Google button, Google's consent page (skipped: it answers with a code), then
    allauth's callback, which asks the fake Google who the person is."""
    google.profile = {"id": uid, "email": email, "verified_email": True, "given_name": "Gina"}
    to_google = client.post(reverse("google_login"))
    state = parse_qs(urlsplit(to_google["Location"]).query)["state"][0]
    return client.get(reverse("google_callback"), {"code": "a-code", "state": state})


@pytest.mark.django_db
def test_a_fresh_instance_lets_nobody_sign_up_without_the_setup_token_and_says_how_to_become_admin(client):
    _set_mode(SignupMode.OPEN)
    page = client.get(reverse("account_signup")).content.decode()
    assert "no admin yet" in page and "localai createsuperuser" in page and "?setup=" in page
    assert 'name="email"' not in page
    _signup(client, "first@example.com")
    _signup(client, "guess@example.com", setup="a-guessed-token")
    assert not User.objects.exists()


@pytest.mark.django_db
def test_the_setup_link_makes_one_admin_and_is_used_up(client, django_capture_on_commit_callbacks):
    token = setup_token_issue()
    with django_capture_on_commit_callbacks(execute=True):
        assert _signup(client, "first@example.com", setup=token).status_code == 302
    first = User.objects.get(email="first@example.com")
    assert first.is_staff and first.is_superuser
    assert Consent.objects.filter(user=first, purpose=ConsentPurpose.MINIMUM_AGE).exists()
    assert not setup_token_matches(token) and setup_token_pending() is None
    client.logout()
    # The same link once more: an ordinary signup now (the instance is open).
    assert _signup(client, "second@example.com", setup=token).status_code == 302
    second = User.objects.get(email="second@example.com")
    assert not second.is_staff and not second.is_superuser


@pytest.mark.django_db
def test_of_two_simultaneous_first_signups_exactly_one_becomes_admin(make_user):
    token = setup_token_issue()
    # Both were let in while there was no admin; the second completes after the first.
    first, second = make_user("first@example.com"), make_user("second@example.com")
    services.user_signup_complete(user=first, setup_token=token)
    with pytest.raises(Refusal) as refused:
        services.user_signup_complete(user=second, setup_token=token)
    assert refused.value.code == "admin_exists"
    assert list(User.objects.filter(is_superuser=True)) == [first]


@pytest.mark.django_db
def test_an_instance_with_an_admin_keeps_no_setup_token(admin, tmp_path):
    setup_token_issue()
    assert setup_token_pending() is None
    assert not (tmp_path / "setup-token").exists()


@pytest.mark.django_db
def test_signup_logs_the_person_in_and_shows_the_chat(client, admin):
    response = _signup(client, "ann@example.com")
    assert response.status_code == 302
    page = client.get(reverse("chat:home"))
    assert page.status_code == 200
    assert b"composer-input" in page.content


@pytest.mark.django_db
def test_closed_instance_refuses_signups(client, admin):
    _set_mode(SignupMode.CLOSED)
    _signup(client, "late@example.com")
    assert not User.objects.filter(email="late@example.com").exists()
    assert b"Sign Up Closed" in client.get(reverse("account_signup")).content


@pytest.mark.django_db
def test_invite_only_needs_a_valid_invitation(client, admin):
    _set_mode(SignupMode.INVITE)
    _signup(client, "uninvited@example.com")
    assert not User.objects.filter(email="uninvited@example.com").exists()

    invitation = Invitation.objects.create(email="guest@example.com", created_by=admin)
    assert _signup(client, "guest@example.com", invite=invitation.token).status_code == 302
    invitation.refresh_from_db()
    assert invitation.accepted_by == User.objects.get(email="guest@example.com")
    client.logout()
    # A used invitation opens nothing.
    _signup(client, "another@example.com", invite=invitation.token)
    assert not User.objects.filter(email="another@example.com").exists()


@pytest.mark.django_db
def test_an_invitation_nobody_used_lapses_and_is_deleted_with_its_address(client, admin):
    _set_mode(SignupMode.INVITE)
    sent = timezone.now() - timedelta(days=31)
    lapsed = Invitation.objects.create(email="late@example.com", created_by=admin, created_at=sent)
    fresh = Invitation.objects.create(email="soon@example.com", created_by=admin)
    _signup(client, "late@example.com", invite=lapsed.token)
    assert not User.objects.filter(email="late@example.com").exists()
    assert retention_enforce()["unused_invitations"] == 1
    assert list(Invitation.objects.all()) == [fresh]


@pytest.mark.django_db
def test_invitation_for_one_address_cannot_be_used_by_another(client, admin):
    _set_mode(SignupMode.INVITE)
    invitation = Invitation.objects.create(email="guest@example.com", created_by=admin)
    response = _signup(client, "someone-else@example.com", invite=invitation.token)
    assert response.status_code == 200
    assert b"different email address" in response.content
    assert not User.objects.filter(email="someone-else@example.com").exists()


@pytest.mark.django_db
def test_an_invitation_used_by_someone_else_a_moment_before_makes_no_second_account(client, admin):
    _set_mode(SignupMode.INVITE)
    invitation = Invitation.objects.create(created_by=admin)  # a link anyone may use, once
    first = User.objects.create_user("first@example.com", PASSWORD)
    client.get(reverse("account_signup"), {"invite": invitation.token})

    # Runs inside the second signup's transaction, just after its account row is written.
    def the_other_signup_commits_first(sender, instance, created, **kwargs):
        if created and instance.email == "second@example.com":
            services.user_signup_complete(user=first, invitation_token=invitation.token)

    post_save.connect(the_other_signup_commits_first, sender=User)
    try:
        response = _signup(client, "second@example.com")
    finally:
        post_save.disconnect(the_other_signup_commits_first, sender=User)
    assert response.status_code == 200
    assert "This invitation has already been used" in response.content.decode()
    assert not User.objects.filter(email="second@example.com").exists()


@pytest.mark.django_db
def test_the_invitation_service_uses_one_invitation_once(make_user, admin):
    invitation = Invitation.objects.create(created_by=admin)
    services.user_signup_complete(user=make_user("a@example.com"), invitation_token=invitation.token)
    with pytest.raises(Refusal) as refused:
        services.user_signup_complete(user=make_user("b@example.com"), invitation_token=invitation.token)
    assert refused.value.code == "invitation_used"


@pytest.mark.django_db
def test_signing_up_with_google_asks_for_the_age_and_records_the_consents(client, admin, google):
    arrived = _sign_in_with_google(client, google, "gina@example.com")
    social_signup = reverse("socialaccount_signup")
    assert arrived.status_code == 302 and arrived["Location"] == social_signup
    assert not User.objects.filter(email="gina@example.com").exists()  # not before the form
    assert 'name="minimum_age"' in client.get(social_signup).content.decode()

    refused = client.post(social_signup, {"email": "gina@example.com"})
    assert "You must be at least 16" in refused.content.decode()
    assert not User.objects.filter(email="gina@example.com").exists()

    assert client.post(social_signup, {"email": "gina@example.com", "minimum_age": "on"}).status_code == 302
    gina = User.objects.get(email="gina@example.com")
    assert SocialAccount.objects.filter(user=gina, provider="google", uid="google-1").exists()
    given = set(Consent.objects.filter(user=gina).values_list("purpose", flat=True))
    assert given == {ConsentPurpose.MINIMUM_AGE, ConsentPurpose.PRIVACY_POLICY}
    assert not gina.is_superuser


@pytest.mark.django_db
def test_google_signup_while_invite_only_needs_the_invitation_and_uses_it_up(client, admin, google):
    _set_mode(SignupMode.INVITE)
    closed = _sign_in_with_google(client, google, "gina@example.com")
    assert closed.status_code == 200 and b"Sign Up Closed" in closed.content

    invitation = Invitation.objects.create(created_by=admin)  # a link anyone may use, once
    client.get(reverse("account_signup"), {"invite": invitation.token})
    assert _sign_in_with_google(client, google, "gina@example.com").status_code == 302
    client.post(reverse("socialaccount_signup"), {"email": "gina@example.com", "minimum_age": "on"})
    invitation.refresh_from_db()
    assert invitation.accepted_by == User.objects.get(email="gina@example.com")

    other = Client()
    other.get(reverse("account_signup"), {"invite": invitation.token})
    closed = _sign_in_with_google(other, google, "hal@example.com", uid="google-2")
    assert closed.status_code == 200 and b"Sign Up Closed" in closed.content
    assert not User.objects.filter(email="hal@example.com").exists()


@pytest.mark.django_db
def test_google_cannot_make_the_first_admin_without_the_setup_token(client, google):
    closed = _sign_in_with_google(client, google, "gina@example.com")
    assert b"no admin yet" in closed.content
    assert not User.objects.exists()


@pytest.mark.django_db
def test_login_logout_and_password_change(client, user):
    response = client.post(reverse("account_login"), {"login": user.email, "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("chat:home")).status_code == 200
    response = client.post(
        reverse("account_change_password"),
        {
            "oldpassword": PASSWORD,
            "password1": "another long passphrase",
            "password2": "another long passphrase",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("another long passphrase")
    client.post(reverse("account_logout"))
    assert client.get(reverse("chat:home")).status_code == 302


@pytest.mark.django_db
def test_sign_in_offers_and_routes_no_provider_without_credentials(client):
    page = client.get(reverse("account_login")).content.decode()
    assert "Google" not in page and "Apple" not in page
    assert client.get("/accounts/google/login/").status_code == 404
    assert client.get("/accounts/apple/login/").status_code == 404


@pytest.mark.django_db
def test_a_person_whose_google_sign_in_was_switched_off_still_sees_their_connections(client, user):
    # Google was set up (in the admin, too, once) and used; then its credentials were removed.
    SocialApp.objects.create(provider="google", name="Google", client_id="cid", secret="s")
    SocialAccount.objects.create(user=user, provider="google", uid="uid-1")
    client.force_login(user)
    assert client.get(reverse("socialaccount_connections")).status_code == 200


@pytest.mark.django_db
def test_wrong_password_is_refused(client, user):
    response = client.post(reverse("account_login"), {"login": user.email, "password": "not it"})
    assert response.status_code == 200
    assert client.get(reverse("chat:home")).status_code == 302


@pytest.mark.django_db
def test_the_admin_signs_in_at_the_rate_limited_sign_in_page(client, make_user):
    cache.clear()  # allauth counts failed sign-ins in the cache
    admin = make_user("root@example.com", is_staff=True, is_superuser=True)
    sign_in = reverse("account_login")
    landed = client.get(reverse("admin:index"), follow=True)
    assert landed.redirect_chain[-1][0] == f"{sign_in}?next=/admin/"
    # The admin's own form is gone: posting the right password to it signs nobody in.
    client.post(reverse("admin:login"), {"username": admin.email, "password": PASSWORD})
    assert client.get(reverse("admin:index")).status_code == 302
    for _ in range(5):
        assert client.post(sign_in, {"login": admin.email, "password": "a guess"}).status_code == 200
    refused = client.post(sign_in, {"login": admin.email, "password": PASSWORD})
    assert "Too many failed login attempts" in refused.content.decode()
    assert client.get(reverse("admin:index")).status_code == 302


@pytest.mark.django_db
def test_signed_in_people_without_admin_rights_are_refused_the_admin(client, user):
    client.force_login(user)
    assert client.get(reverse("admin:login")).status_code == 403


@pytest.mark.django_db
def test_password_reset_mails_a_link_that_sets_a_new_password(client, user, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    client.post(reverse("account_reset_password"), {"email": user.email})
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/]+(/accounts/password/reset/key/\S+)", mail.outbox[0].body).group(1)
    form_page = client.get(link, follow=True)
    client.post(
        form_page.redirect_chain[-1][0] if form_page.redirect_chain else link,
        {"password1": "a brand new passphrase", "password2": "a brand new passphrase"},
    )
    user.refresh_from_db()
    assert user.check_password("a brand new passphrase")


@pytest.mark.django_db
def test_profile_saves_display_name_and_avatar_served_only_to_its_owner(client, user, other_user):
    from io import BytesIO

    from PIL import Image

    image = BytesIO()
    Image.new("RGB", (8, 8), "red").save(image, "PNG")
    image.name = "me.png"
    image.seek(0)
    client.force_login(user)
    response = client.post(reverse("accounts:profile"), {"display_name": "Annie", "avatar": image})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.display_name == "Annie" and user.avatar
    assert client.get(reverse("accounts:avatar")).status_code == 200
    client.force_login(other_user)
    assert client.get(reverse("accounts:avatar")).status_code == 404


@pytest.mark.django_db
def test_profile_rejects_a_file_that_is_not_an_image(client, user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(user)
    response = client.post(
        reverse("accounts:profile"),
        {"display_name": "Ann", "avatar": SimpleUploadedFile("x.png", b"not an image", "image/png")},
    )
    assert response.status_code == 200
    user.refresh_from_db()
    assert not user.avatar


@pytest.mark.django_db
def test_a_person_can_make_their_account_local_only(client, user):
    client.force_login(user)
    client.post(reverse("accounts:profile"), {"display_name": "Ann", "local_only": "on"})
    user.refresh_from_db()
    assert user.local_only


@pytest.mark.django_db
def test_the_theme_chosen_in_the_profile_is_on_every_page_from_the_first_byte(client, user):
    assert '<html lang="en" data-theme="system">' in client.get(reverse("account_login")).content.decode()
    client.force_login(user)
    client.post(reverse("accounts:profile"), {"display_name": "Ann", "theme": "dark"})
    for name in ("chat:home", "accounts:privacy", "account_change_password"):
        assert '<html lang="en" data-theme="dark">' in client.get(reverse(name)).content.decode()
    client.post(reverse("accounts:profile"), {"display_name": "Ann"})  # a page from before the choice existed
    user.refresh_from_db()
    assert user.theme == "dark"
    response = client.post(reverse("accounts:profile"), {"display_name": "Ann", "theme": "neon"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    user.refresh_from_db()
    assert user.theme == "dark"
