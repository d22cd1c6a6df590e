"""The rules' SQL functions: the database holds exactly what users/sql says, and a
first sign-in whose invite-code draws are all taken draws again instead of failing."""

from django.db import connection

from tests.conftest import VERIFY, error_codes, top_error_code
from users import sql
from users.models import INVITE_CODE_DRAWS, User
from users.services import codes


def test_the_database_holds_the_functions_the_files_say(db):
    assert sql.differences(connection) == []


def test_a_function_changed_or_left_over_in_the_database_is_told(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE OR REPLACE FUNCTION users_hits(hits jsonb, since double precision) "
            "RETURNS double precision[] LANGUAGE sql IMMUTABLE AS $$ SELECT '{}'::float8[] $$"
        )
        cursor.execute(
            "CREATE FUNCTION users_left_over() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$"
        )
    assert sql.differences(connection) == [
        "not in users/sql: users_left_over()",
        "differs from users/sql: users_hits(hits jsonb, since double precision)",
    ]
    sql.install(connection)  # what migrate does
    assert sql.differences(connection) == ["not in users/sql: users_left_over()"]


def test_a_first_sign_in_whose_invite_codes_are_all_taken_draws_again(api, make_user, monkeypatch):
    taken, _ = make_user()
    draws = iter([taken.invite_code] * INVITE_CODE_DRAWS + ["K7M2QP"] * INVITE_CODE_DRAWS)
    monkeypatch.setattr(codes, "new_invite_code", lambda: next(draws))
    sent = api.send("+375291234567")
    signed_in = api.verify("+375291234567", sent["debugCode"])
    assert signed_in["userErrors"] == [] and signed_in["isNewUser"]
    assert signed_in["profile"]["inviteCode"] == "K7M2QP"


def test_a_sign_in_that_never_draws_a_free_code_is_unavailable_and_leaves_the_code_live(
    api, make_user, monkeypatch
):
    taken, _ = make_user()
    monkeypatch.setattr(codes, "new_invite_code", lambda: taken.invite_code)
    sent = api.send("+375291234567")
    body = api.post(VERIFY, {"phone": "+375291234567", "code": sent["debugCode"]})
    assert top_error_code(body) == "SERVICE_UNAVAILABLE"  # a moment's bad luck, not a 500
    assert not User.objects.filter(phone="+375291234567").exists()
    monkeypatch.undo()
    signed_in = api.verify("+375291234567", sent["debugCode"])
    assert error_codes(signed_in) == [] and signed_in["isNewUser"]
