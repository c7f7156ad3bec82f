import re

import pytest
from allauth.socialaccount.models import SocialAccount, SocialApp
from django.core import mail
from django.core.cache import cache
from django.urls import reverse

from accounts.models import InstanceSettings, Invitation, SignupMode, User
from tests.conftest import PASSWORD


def _signup(client, email, **query):
    url = reverse("account_signup")
    if query:
        client.get(url, query)  # an invitation link is opened first
    return client.post(
        url, {"email": email, "password1": PASSWORD, "password2": PASSWORD, "minimum_age": "on"}
    )


def _set_mode(mode):
    InstanceSettings.objects.update_or_create(pk=1, defaults={"signup_mode": mode})


@pytest.mark.django_db
def test_first_account_administers_the_instance_and_later_ones_do_not(client):
    assert _signup(client, "first@example.com").status_code == 302
    client.logout()
    assert _signup(client, "second@example.com").status_code == 302
    first, second = User.objects.get(email="first@example.com"), User.objects.get(email="second@example.com")
    assert first.is_staff and first.is_superuser
    assert not second.is_staff and not second.is_superuser


@pytest.mark.django_db
def test_signup_logs_the_person_in_and_shows_the_chat(client):
    response = _signup(client, "ann@example.com")
    assert response.status_code == 302
    page = client.get(reverse("chat:home"))
    assert page.status_code == 200
    assert b"composer-input" in page.content


@pytest.mark.django_db
def test_closed_instance_refuses_signups_but_not_its_first_person(client, make_user):
    _set_mode(SignupMode.CLOSED)
    assert _signup(client, "first@example.com").status_code == 302  # a fresh instance lets one in
    client.logout()
    _signup(client, "late@example.com")
    assert not User.objects.filter(email="late@example.com").exists()
    assert b"Sign Up Closed" in client.get(reverse("account_signup")).content


@pytest.mark.django_db
def test_invite_only_needs_a_valid_invitation(client, user):
    _set_mode(SignupMode.INVITE)
    _signup(client, "uninvited@example.com")
    assert not User.objects.filter(email="uninvited@example.com").exists()

    invitation = Invitation.objects.create(email="guest@example.com", created_by=user)
    assert _signup(client, "guest@example.com", invite=invitation.token).status_code == 302
    invitation.refresh_from_db()
    assert invitation.accepted_by == User.objects.get(email="guest@example.com")
    client.logout()
    # A used invitation opens nothing.
    _signup(client, "another@example.com", invite=invitation.token)
    assert not User.objects.filter(email="another@example.com").exists()


@pytest.mark.django_db
def test_invitation_for_one_address_cannot_be_used_by_another(client, user):
    _set_mode(SignupMode.INVITE)
    invitation = Invitation.objects.create(email="guest@example.com", created_by=user)
    response = _signup(client, "someone-else@example.com", invite=invitation.token)
    assert response.status_code == 200
    assert b"different email address" in response.content
    assert not User.objects.filter(email="someone-else@example.com").exists()


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
