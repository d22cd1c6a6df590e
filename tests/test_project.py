"""The project around the API: exported schema, admin, management commands, client page."""

import io
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.test import Client

from schema.schema import schema
from tests.conftest import Api
from users.models import OtpChallenge, RateLimit, User


def test_schema_graphql_is_up_to_date():
    exported = Path(settings.BASE_DIR, "schema.graphql").read_text()
    assert exported == schema.as_str() + "\n", "run: python manage.py export_schema"


def test_createsuperuser_without_input(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PHONE", "+375291234567")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-admin-password")
    call_command("createsuperuser", "--noinput", stdout=io.StringIO())
    admin = User.objects.get(phone="+375291234567")
    assert admin.is_staff and admin.is_superuser and admin.check_password("a-long-admin-password")
    assert len(admin.invite_code) == 6


def test_staff_find_users_by_phone_and_invite_code_in_the_admin(db, make_user):
    inviter, _ = make_user()
    invited, token = make_user()
    Api().activate(token, inviter.invite_code)
    User.objects.create_superuser("+375291234567", "a-long-admin-password")
    client = Client()
    client.force_login(User.objects.get(phone="+375291234567"))
    page = client.get("/admin/users/user/", {"q": inviter.invite_code})
    assert page.status_code == 200
    assert inviter.phone in page.content.decode()
    page = client.get("/admin/users/user/", {"q": invited.phone}).content.decode()
    assert invited.phone in page and inviter.phone in page  # the inviter column
    add = client.post("/admin/users/user/add/", {"phone": "+375 29 765 43 21"})
    assert add.status_code == 302
    assert User.objects.filter(phone="+375297654321").exists()


def test_the_admin_keeps_csrf_protection(db):
    User.objects.create_superuser("+375291234567", "a-long-admin-password")
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.get())
    assert client.post("/admin/users/user/add/", {"phone": "+375297654321"}).status_code == 403
    assert not User.objects.filter(phone="+375297654321").exists()


def test_users_query_is_for_staff_newest_first(make_user):
    _, token = make_user()
    _, staff_token = make_user(is_staff=True)
    api = Api()
    query = """query($after: String) { users(first: 1, after: $after) {
        totalCount edges { node { phone } } pageInfo { hasNextPage endCursor } } }"""
    assert api.post(query, token=token)["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert api.post(query)["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    phones, after = [], None
    while True:
        page = api.data(query, {"after": after}, token=staff_token)["users"]
        phones += [edge["node"]["phone"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert phones == list(
        User.objects.order_by("-date_joined", "-id").values_list("phone", flat=True)
    )


def test_purge_expired_keeps_what_still_counts(api, settings):
    settings.OTP_TTL = 0
    api.send("+375291234567")
    settings.OTP_TTL = 300
    api.send("+375291234568")
    RateLimit.objects.create(
        key="send:phone:old", hits=[time.time() - 7200], expires_at="2000-01-01T00:00:00Z"
    )
    out = io.StringIO()
    call_command("purge_expired", stdout=out)
    assert "codes: 1" in out.getvalue()
    assert list(OtpChallenge.objects.values_list("phone", flat=True)) == ["+375291234568"]
    assert not RateLimit.objects.filter(key="send:phone:old").exists()
    assert RateLimit.objects.filter(key="send:phone:+375291234568").exists()


def test_the_reference_client_is_served(db):
    page = Client().get("/")
    assert page.status_code == 200 and b'<script type="module"' in page.content
    assert "script-src 'self'" in page["Content-Security-Policy"]
    assert page["X-Frame-Options"] == "DENY"
    assert page["X-Content-Type-Options"] == "nosniff"


def test_single_page_apps_on_allowed_origins_may_call_the_api(db, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    preflight = Client().options(
        "/graphql/",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "authorization" in preflight["Access-Control-Allow-Headers"]
    other = Client().options(
        "/graphql/",
        HTTP_ORIGIN="https://evil.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
    )
    assert "Access-Control-Allow-Origin" not in other


def test_admin_sign_in_accepts_any_spelling_and_stops_password_guessing(db):
    User.objects.create_superuser("+375291234567", "a-long-admin-password")
    client = Client()
    signed_in = client.post(
        "/admin/login/?next=/admin/",
        {"username": "+375 29 123-45-67", "password": "a-long-admin-password"},
    )
    assert signed_in.status_code == 302 and signed_in["Location"] == "/admin/"
    guesser = Client()
    for i in range(5):
        wrong = guesser.post("/admin/login/", {"username": "+375291234567", "password": f"{i}"})
        assert wrong.status_code == 200 and "correct phone" in wrong.content.decode()
    # The sixth try is refused whatever the password, and says why.
    right = guesser.post(
        "/admin/login/", {"username": "+375291234567", "password": "a-long-admin-password"}
    )
    assert "Too many failed sign-ins" in right.content.decode()
    assert "_auth_user_id" not in guesser.session


def test_admin_sign_in_stops_one_address_guessing_across_phones(db, settings):
    """20 wrong passwords from one address, each for another phone (so no phone's own
    cap is reached): the next try from there is refused, the right password included;
    another address still signs in."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast
    User.objects.create_superuser("+375291234567", "a-long-admin-password")
    guesser = Client(REMOTE_ADDR="203.0.113.9")
    for i in range(20):
        wrong = guesser.post("/admin/login/", {"username": f"+3752900000{i:02d}", "password": "x"})
        assert "correct phone" in wrong.content.decode(), i
    right = {"username": "+375291234567", "password": "a-long-admin-password"}
    refused = guesser.post("/admin/login/", right)
    assert "Too many failed sign-ins" in refused.content.decode()
    assert "_auth_user_id" not in guesser.session
    other = Client(REMOTE_ADDR="198.51.100.4").post("/admin/login/?next=/admin/", right)
    assert other.status_code == 302 and other["Location"] == "/admin/"
