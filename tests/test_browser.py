# ruff: noqa: RUF001 (the page speaks Russian, and its English uses typographic apostrophes)
"""The reference client at / in a real browser, as two people would use it.

Debian's Chromium, driven by Playwright, at phone width, once in Russian and once in
English: person 1 signs up (after a wrong code, shown next to its field), copies the
share link; person 2 opens it, finds the invite filled in and signs up through it;
person 1's access token expires (JWT_EXPIRATION is 3 s) and the next action is
refreshed silently; person 1 sees the referral appear, and is refused person 2's
code as a cycle, next to the field. The server is uvicorn on its own SQLite file,
whatever DATABASE_URL says. Screenshots go to docs/ for README.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from graphql import build_schema, parse, validate

from tests.servers import CHROMIUM, CHROMIUM_ARGS, free_port

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}
TOKEN_LIFETIME = 3  # seconds: JWT_EXPIRATION of the server under test
DOCS = Path(settings.BASE_DIR, "docs")
STATIC = Path(settings.BASE_DIR, "backend", "static", "client")
COLLECTED = Path(settings.STATIC_ROOT, "client")

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"
)

# What a person reads, in each language.
TEXTS = {
    "en": {
        "locale": "en-GB",
        "sign_in": "Sign in",
        "enter_code": "Enter the code",
        "signed_in": "You’re signed in",
        "phone": "Phone number",
        "get_code": "Get code",
        "sending": "Sending the code…",
        "code": "Code from the SMS",
        "invite": "Invite code (optional)",
        "submit": "Sign in",
        "resend_in": r"New code in [01]:\d\d",
        "wrong_code": "Wrong code. Check the SMS and try again.",
        "invited": "You’re invited! Code {code} will be applied when you sign up.",
        "welcome_invited": "Welcome! You joined with invite code {code}.",
        "empty": "No one yet",
        "copy_link": "Copy link",
        "link_copied": "Link copied",
        "refresh": "Refresh",
        "more": "Show more",
        "friend_code": "Friend’s invite code",
        "activate": "Activate",
        "cycle": "This person joined through your invite, so you can’t join through theirs.",
        "sign_out": "Sign out",
        "signed_out": "You’ve signed out.",
    },
    "ru": {
        "locale": "ru-RU",
        "sign_in": "Вход",
        "enter_code": "Введите код",
        "signed_in": "Вы вошли",
        "phone": "Номер телефона",
        "get_code": "Получить код",
        "sending": "Отправляем код…",
        "code": "Код из SMS",
        "invite": "Код приглашения (необязательно)",
        "submit": "Войти",
        "resend_in": r"Новый код через [01]:\d\d",
        "wrong_code": "Неверный код. Проверьте SMS и попробуйте ещё раз.",
        "invited": "Вас пригласили! Код {code} применится при регистрации.",
        "welcome_invited": "Добро пожаловать! Вы присоединились по коду приглашения {code}.",
        "empty": "Пока никого",
        "copy_link": "Скопировать ссылку",
        "link_copied": "Ссылка скопирована",
        "refresh": "Обновить",
        "more": "Показать ещё",
        "friend_code": "Код приглашения друга",
        "activate": "Активировать",
        "cycle": "Этот человек пришёл по вашему приглашению, поэтому его код вам не подходит.",
        "sign_out": "Выйти",
        "signed_out": "Вы вышли из аккаунта.",
    },
}
# Person 1 and person 2, and in English the ten people who joined before person 2.
PHONES = {
    "en": ("+375 29 111-00-01", "+375 29 111-00-02"),
    "ru": ("+375 29 222-00-01", "+375 29 222-00-02"),
}
SEEDED = [f"+3753344400{i:02d}" for i in range(10)]


def graphql(base, query, variables):
    request = urllib.request.Request(
        f"{base}/graphql/",
        json.dumps({"query": query, "variables": variables}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


def sign_up_through(base, phones, invite):
    """Other people joining through `invite`, by the API, as any app would.

    The codes are asked for at once (each send waits for the simulated SMS); the
    sign-ins go one by one, as SQLite takes one writer at a time.
    """
    send = "mutation S($p: String!) { sendCode(phone: $p) { debugCode } }"
    verify = """mutation V($p: String!, $c: String!, $i: String) {
        verifyCode(phone: $p, code: $c, inviteCode: $i) { userErrors { code } } }"""
    with ThreadPoolExecutor(max_workers=len(phones)) as pool:
        sent = list(pool.map(lambda phone: graphql(base, send, {"p": phone}), phones))
    for phone, answer in zip(phones, sent, strict=True):
        code = answer["sendCode"]["debugCode"]
        signed_in = graphql(base, verify, {"p": phone, "c": code, "i": invite})
        assert signed_in["verifyCode"]["userErrors"] == []


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """uvicorn as operators run it, DEBUG off, on a fresh SQLite file of its own."""
    stale = [
        path.name
        for path in STATIC.iterdir()
        if not (COLLECTED / path.name).exists()
        or (COLLECTED / path.name).read_bytes() != path.read_bytes()
    ]
    if stale:
        pytest.fail(f"static files not collected: {stale}; `make test` runs collectstatic")
    database = tmp_path_factory.mktemp("browser") / "db.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "DEBUG": "0",
        "GRAPHIQL": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "SMS_BACKEND": "simulated",
        "SMS_SIMULATED_DELAY": "0.5",
        "JWT_EXPIRATION": str(TOKEN_LIFETIME),
        "OTP_MAX_SENDS_PER_IP": "1000",
        "OTP_TEST_NUMBERS": "",
        "PHONE_DEFAULT_REGION": "",
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run(
        [*manage, "migrate", "--noinput", "-v0"], cwd=settings.BASE_DIR, env=env, check=True
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.asgi:application", "--port", str(port)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def person(browser, base, lang):
    """A new browser profile of a person whose browser speaks `lang`."""
    context = browser.new_context(
        base_url=base,
        viewport=PHONE,
        locale=TEXTS[lang]["locale"],
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = context.new_page()
    page.sent = []  # (operation name, Accept-Language) of every GraphQL call
    page.on(
        "request",
        lambda request: (
            request.url.endswith("/graphql/")
            and page.sent.append(
                (
                    request.post_data_json.get("operationName"),
                    request.headers.get("accept-language"),
                )
            )
        ),
    )
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
    return page


def shot(page, name):
    """A screenshot for README: the whole page, transitions finished, no caret."""
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=DOCS / name, full_page=True, animations="disabled", caret="hide")


def beside(field, message):
    """The message sits right under its field, and the field points to it."""
    box, under = field.bounding_box(), message.bounding_box()
    return 0 <= under["y"] - (box["y"] + box["height"]) < 40 and abs(under["x"] - box["x"]) < 8


def sign_up(page, text, phone, *, wrong_code_first=False, screenshot=None):
    """Type the phone, get the code, read it from the page and type it back."""
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", level=1)).to_have_text(text["sign_in"])
    page.get_by_label(text["phone"]).fill(phone)
    page.get_by_role("button", name=text["get_code"]).click()
    expect(page.get_by_role("button", name=text["sending"])).to_be_disabled()
    expect(page.get_by_role("heading", level=1)).to_have_text(text["enter_code"])
    expect(page.locator("#lead")).to_contain_text(phone)  # grouped the familiar way
    expect(page.get_by_role("button", name=re.compile(text["resend_in"]))).to_be_disabled()
    code_field = page.get_by_label(text["code"])
    expect(code_field).to_be_focused()
    code = page.locator("#debug-code strong").inner_text()  # the demo server shows it
    if wrong_code_first:
        code_field.fill(f"{(int(code) + 1) % 10000:04d}")
        page.get_by_role("button", name=text["submit"], exact=True).click()
        error = page.locator("#code-error")
        expect(error).to_have_text(text["wrong_code"])
        expect(code_field).to_be_focused()
        expect(code_field).to_have_attribute("aria-invalid", "true")
        assert beside(code_field, error)
        if screenshot:
            shot(page, screenshot)
    code_field.fill(code)
    expect(code_field).not_to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name=text["submit"], exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(text["signed_in"])
    expect(page.locator("#lead")).to_contain_text(phone)


def test_the_client_sends_named_operations_valid_against_schema_graphql():
    """Each operation pastes into GraphiQL and feeds graphql-codegen as it stands."""
    source = (STATIC / "operations.js").read_text()
    schema = build_schema(Path(settings.BASE_DIR, "schema.graphql").read_text())
    documents = re.findall(r"= gql`([^`]*)`", source)
    names = []
    for document in documents:
        parsed = parse(document)
        assert len(parsed.definitions) == 1, document
        names.append(parsed.definitions[0].name.value)
        assert validate(schema, parsed) == [], document
    assert len(documents) == source.count("export const") == len(set(names)) == 7


@needs_chromium
@pytest.mark.parametrize("lang", ["ru", "en"])
def test_two_people_an_invite_link_and_a_token_expiry(browser, server, lang):
    from playwright.sync_api import expect

    text = TEXTS[lang]
    phone_1, phone_2 = PHONES[lang]

    # Person 1 signs up, after one wrong code, and copies the share link.
    first = person(browser, server, lang)
    first.goto("/")
    expect(first.locator("html")).to_have_attribute("lang", lang)
    expect(first.get_by_label(text["phone"])).to_be_focused()
    shot(first, f"client-{lang}-signin.png")
    sign_up(first, text, phone_1, wrong_code_first=True, screenshot=f"client-{lang}-wrong-code.png")
    signed_in_at = time.monotonic()
    expect(first.get_by_text(text["empty"])).to_be_visible()
    my_code = first.locator("#my-code").inner_text()
    first.get_by_role("button", name=text["copy_link"]).click()
    expect(first.get_by_role("status").filter(has_text=text["link_copied"])).to_be_visible()
    link = first.evaluate("navigator.clipboard.readText()")
    assert link == f"{server}/?invite={my_code}"
    expect(first.locator("#share-link")).to_have_value(link)

    if lang == "en":  # ten people join before person 2, so person 2 is on the second page
        sign_up_through(server, SEEDED, my_code)

    # Person 2 opens the link: the invite is filled in, and they join through it.
    second = person(browser, server, lang)
    second.goto(link)
    expect(second.get_by_text(text["invited"].format(code=my_code))).to_be_visible()
    second.get_by_label(text["phone"]).fill(phone_2)
    shot(second, f"client-{lang}-invited.png")
    second.get_by_role("button", name=text["get_code"]).click()
    expect(second.get_by_label(text["invite"])).to_have_value(my_code)
    second.get_by_label(text["code"]).fill(second.locator("#debug-code strong").inner_text())
    second.get_by_role("button", name=text["submit"], exact=True).click()
    expect(second.get_by_role("heading", level=1)).to_have_text(text["signed_in"])
    expect(second.get_by_text(text["welcome_invited"].format(code=my_code))).to_be_visible()
    their_code = second.locator("#my-code").inner_text()

    # Person 1's access token has expired by now; "Refresh" still just works.
    time.sleep(max(0, signed_in_at + TOKEN_LIFETIME + 1 - time.monotonic()))
    first.get_by_role("button", name=text["refresh"]).click()
    referrals = first.locator("#referrals li")
    if lang == "en":
        expect(first.locator("#referral-count")).to_have_text("11")
        expect(referrals).to_have_count(10)
        expect(referrals.filter(has_text=phone_2)).to_have_count(0)
        first.get_by_role("button", name=text["more"]).click()
        expect(referrals).to_have_count(11)
        expect(first.get_by_role("button", name=text["more"])).to_be_hidden()
    else:
        expect(first.locator("#referral-count")).to_have_text("1")
    expect(referrals.filter(has_text=phone_2)).to_be_visible()
    expect(first.get_by_role("heading", level=1)).to_have_text(text["signed_in"])
    refreshes = [name for name, _ in first.sent if name == "RefreshToken"]
    assert len(refreshes) == 1, first.sent

    # Person 2 joined through person 1, so person 1 cannot join through person 2.
    time.sleep(max(0, signed_in_at + 2 * TOKEN_LIFETIME + 1 - time.monotonic()))
    friend_code = first.get_by_label(text["friend_code"])
    friend_code.fill(their_code)
    first.get_by_role("button", name=text["activate"], exact=True).click()
    error = first.locator("#activate-error")
    expect(error).to_have_text(text["cycle"])
    expect(friend_code).to_be_focused()
    expect(friend_code).to_have_attribute("aria-invalid", "true")
    assert beside(friend_code.locator(".."), error)
    expect(first.get_by_role("heading", level=1)).to_have_text(text["signed_in"])
    assert [name for name, _ in first.sent].count("RefreshToken") == 2, first.sent
    friend_code.fill("")
    first.locator("#title").focus()
    shot(first, f"client-{lang}-profile.png")

    # Every call asked for the page's language.
    assert {language for _, language in first.sent + second.sent} == {lang}

    if lang == "en":
        first.set_viewport_size(DESKTOP)
        shot(first, "client-en-desktop.png")
        # The switch changes the page and is remembered.
        first.get_by_role("button", name="RU").click()
        expect(first.locator("html")).to_have_attribute("lang", "ru")
        expect(first.get_by_role("heading", level=1)).to_have_text(TEXTS["ru"]["signed_in"])
        first.reload()
        expect(first.get_by_role("heading", level=1)).to_have_text(TEXTS["ru"]["signed_in"])
    else:
        first.get_by_role("button", name=text["sign_out"]).click()
        expect(first.get_by_role("heading", level=1)).to_have_text(text["sign_in"])
        expect(first.get_by_text(text["signed_out"])).to_be_visible()
    assert first.errors == second.errors == []  # no script errors, no CSP refusals
    first.context.close()
    second.context.close()
