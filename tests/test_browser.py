# ruff: noqa: RUF001 (the page speaks Russian, and its English uses typographic apostrophes)
"""The reference client at / and the admin in a real browser, as people use them.

Debian's Chromium, driven by Playwright, at phone width, once in Russian and once in
English: person 1 signs up (after a wrong code, shown next to its field), copies the
share link; person 2 opens it, finds the invite filled in and signs up through it;
person 1's access token expires (JWT_EXPIRATION is 3 s) and the next action is
refreshed silently; person 1 sees the referral appear, and is refused a wrong code and
person 2's code, next to the field and in view. The test waits for an expiry by the
`tokenExpiresAt` of the answer that issued the token, never by a guess of elapsed time.
Beside it: the code going in with its 4th digit (typed, pasted, WebOTP), signing out,
the hint with PHONE_DEFAULT_REGION, and the admin's sign-in and user list.

On every screen, every visible text is measured against what is drawn behind it, from
computed colours, in light and dark mode, with each button also hovered, disabled and
busy, and each notice and message in each of its kinds: WCAG's 4.5:1 (tests/contrast.js).

The server is uvicorn as operators run it (tests/servers.py) on the PostgreSQL test
database. Screenshots go to a temporary folder; `make screenshots` takes them into docs/
for README (SCREENSHOTS_DIR).
"""

import contextlib
import json
import os
import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from graphql import build_schema, parse, validate

from tests.servers import CHROMIUM, CHROMIUM_ARGS, served, start_server
from users.models import Session, User
from users.phones import MAX_PHONE_INPUT
from users.services import tokens

PHONE = {"width": 390, "height": 844}
SMALL_PHONE = {"width": 320, "height": 640}
DESKTOP = {"width": 1280, "height": 800}
TOKEN_LIFETIME = 3  # seconds: JWT_EXPIRATION of the server under test
MIN_CONTRAST = 4.5  # WCAG 2 AA, normal text
SCREENSHOTS_DIR = os.environ.get("SCREENSHOTS_DIR")  # docs/ with `make screenshots`
STATIC = Path(settings.BASE_DIR, "backend", "static", "client")
COLLECTED = Path(settings.STATIC_ROOT, "client")
SERVER_ENV = {
    "SMS_SIMULATED_DELAY": "0.5",
    "JWT_EXPIRATION": str(TOKEN_LIFETIME),
    "OTP_MAX_SENDS_PER_IP": "1000",
    "OTP_TEST_NUMBERS": "",
    "PHONE_DEFAULT_REGION": "",
}

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
        "hint": "With the country code, e.g. +375 29 123-45-67",
        "country": "Belarus",
        "get_code": "Get code",
        "sending": "Sending the code…",
        "code": "Code from the SMS",
        "sms": "Your code: {code}",
        "invite": "Invite code (optional)",
        "submit": "Sign in",
        "resend_in": r"New code in [01]:\d\d",
        "wrong_code": "Wrong code. Check the SMS and try again.",
        "invited": "You’re invited! Code {code} will be applied when you sign up.",
        "welcome": "Welcome! Your account is ready.",
        "welcome_invited": "Welcome! You joined with invite code {code}.",
        "skipped": "You’re signed in, but invite code {code} wasn’t applied",
        "empty": "No one yet",
        "copy_code": "Copy code",
        "code_copied": "Code copied",
        "copy_link": "Copy link",
        "link_copied": "Link copied",
        "refresh": "Refresh",
        "more": "Show more",
        "friend_code": "Friend’s invite code",
        "activate": "Activate",
        "not_found": "There’s no such invite code. Check it and try again.",
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
        "hint": "С кодом страны, например +375 29 123-45-67",
        "country": "Беларусь",
        "get_code": "Получить код",
        "sending": "Отправляем код…",
        "code": "Код из SMS",
        "sms": "Ваш код: {code}",
        "invite": "Код приглашения (необязательно)",
        "submit": "Войти",
        "resend_in": r"Новый код через [01]:\d\d",
        "wrong_code": "Неверный код. Проверьте SMS и попробуйте ещё раз.",
        "invited": "Вас пригласили! Код {code} применится при регистрации.",
        "welcome": "Добро пожаловать! Аккаунт создан.",
        "welcome_invited": "Добро пожаловать! Вы присоединились по коду приглашения {code}.",
        "skipped": "Вы вошли, но код приглашения {code} не применён",
        "empty": "Пока никого",
        "copy_code": "Скопировать код",
        "code_copied": "Код скопирован",
        "copy_link": "Скопировать ссылку",
        "link_copied": "Ссылка скопирована",
        "refresh": "Обновить",
        "more": "Показать ещё",
        "friend_code": "Код приглашения друга",
        "activate": "Активировать",
        "not_found": "Такого кода приглашения нет. Проверьте его и попробуйте ещё раз.",
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
NO_ONE_HAS_IT = "ZZZZZZ"  # an invite code of the right shape that no one is given here


# ---------------------------------------------------------------------------------------
# The server, the browser and the people


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
    """Other people joining through `invite`, by the API, as any app would."""
    send = "mutation S($p: String!) { sendCode(phone: $p) { debugCode } }"
    verify = """mutation V($p: String!, $c: String!, $i: String) {
        verifyCode(phone: $p, code: $c, inviteCode: $i) { userErrors { code } } }"""
    for phone in phones:
        code = graphql(base, send, {"p": phone})["sendCode"]["debugCode"]
        signed_in = graphql(base, verify, {"p": phone, "c": code, "i": invite})
        assert signed_in["verifyCode"]["userErrors"] == []


def check_collected():
    stale = [
        path.name
        for path in STATIC.iterdir()
        if not (COLLECTED / path.name).exists()
        or (COLLECTED / path.name).read_bytes() != path.read_bytes()
    ]
    if stale:
        pytest.fail(f"static files not collected: {stale}; `make test` runs collectstatic")


@contextlib.contextmanager
def uvicorn(env):
    """tests/servers.py's start_server, entered from a thread of its own: its health
    check calls asyncio.run, which cannot run in the thread where Playwright's sync API
    keeps its event loop."""
    check_collected()
    manager = start_server(env)
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(manager.__enter__).result()
    try:
        yield running
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="module")
def server(django_db_setup):
    """uvicorn as operators run it, DEBUG off, on the test database; its URL."""
    with uvicorn(SERVER_ENV) as running:
        yield running.url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which Django takes
    # for an async context: it would refuse the tests' database work and pytest-django's
    # flush after each test. No coroutine of ours runs in between.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    """Where the pictures go: docs/ for `make screenshots`, else a folder of this run."""
    if SCREENSHOTS_DIR:
        Path(SCREENSHOTS_DIR).mkdir(exist_ok=True)
        return Path(SCREENSHOTS_DIR)
    return tmp_path_factory.mktemp("screenshots")


def operation_of(request):
    return (request.post_data_json or {}).get("operationName")


def person(browser, base, lang):
    """A new browser profile of a person whose browser speaks `lang`, on a phone."""
    context = browser.new_context(
        base_url=base,
        viewport=PHONE,
        locale=TEXTS[lang]["locale"],
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = context.new_page()
    page.sent = []  # (operation name, Accept-Language) of every GraphQL call
    page.token_answers = []  # the answers to VerifyCode and RefreshToken, in order
    page.on(
        "request",
        lambda request: (
            request.url.endswith("/graphql/")
            and page.sent.append((operation_of(request), request.headers.get("accept-language")))
        ),
    )
    page.on(
        "response",
        lambda response: (
            response.url.endswith("/graphql/")
            and operation_of(response.request) in {"VerifyCode", "RefreshToken"}
            and page.token_answers.append(response)
        ),
    )
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
    return page


def sent(page, name):
    return [operation for operation, _ in page.sent].count(name)


def wait_until_expired(page):
    """Until the server refuses the access token the page holds: the `tokenExpiresAt` of
    the answer that issued it (JWT `exp`: refused from that second on; the server's clock
    is this machine's)."""
    for response in reversed(page.token_answers):
        (payload,) = response.json()["data"].values()
        if payload["token"]:
            expires_at = datetime.fromisoformat(payload["tokenExpiresAt"]).timestamp()
            break
    else:
        raise AssertionError("no answer issued a token")
    while (left := expires_at - time.time()) >= 0:
        time.sleep(left + 0.01)


def shot(page, folder, name):
    """A screenshot for README: the whole page, transitions finished, no caret."""
    page.screenshot(path=folder / name, full_page=True, animations="disabled", caret="hide")


def beside(field, message):
    """The message sits right under its field, and the field points to it."""
    box, under = field.bounding_box(), message.bounding_box()
    return 0 <= under["y"] - (box["y"] + box["height"]) < 40 and abs(under["x"] - box["x"]) < 8


def in_view(page, *locators):
    """Each of these is wholly on the screen, not above or below its edges (to a pixel:
    a box can end at a fraction past the edge it was scrolled to)."""
    height = page.viewport_size["height"]
    boxes = [locator.bounding_box() for locator in locators]
    return all(box["y"] >= -1 and box["y"] + box["height"] <= height + 1 for box in boxes)


def readable(text):
    """What a person reads, with the page's no-break spaces and hyphens as plain ones."""
    return text.replace("\u00a0", " ").replace("\u2011", "-")


def expect_link_shown(field, *, whole=False):
    """The end of the invite link (its code), or all of it, comes inside the field's
    visible box once the page has laid it out (a resize is answered in the next frame)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    shown = "scrollWidth <= clientWidth" if whole else "scrollLeft + clientWidth >= scrollWidth - 1"
    try:
        field.page.wait_for_function(
            f"({{ scrollLeft, scrollWidth, clientWidth }}) => {shown}",
            arg=field.element_handle(),
            timeout=5000,
        )
    except PlaywrightTimeout:
        sizes = field.evaluate("e => [e.scrollLeft, e.clientWidth, e.scrollWidth]")
        raise AssertionError(
            f"not {shown}: [scrollLeft, clientWidth, scrollWidth] {sizes}"
        ) from None


# ---------------------------------------------------------------------------------------
# Contrast, from computed colours

# tests/contrast.js: the measurement, run in the page.
CONTRAST_JS = Path(__file__).with_name("contrast.js").read_text()


def assert_readable(page, where, *, states=False):
    """Every visible text is MIN_CONTRAST or more against what is behind it, in light and
    dark mode; with `states`, each button also hovered, disabled and busy, and each notice
    and message slot of the screen shown in each of its kinds."""
    failures = []
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        result = page.evaluate(CONTRAST_JS, {"min": MIN_CONTRAST, "states": states})
        failures += [f"{scheme}: {failure}" for failure in result["failures"]]
        if not states:
            continue
        buttons = page.locator("button:visible")
        for index in range(buttons.count()):
            button = buttons.nth(index)
            button.hover()
            result = button.evaluate(
                f"(only, args) => ({CONTRAST_JS})({{ ...args, only }})",
                {"min": MIN_CONTRAST, "state": "hovered"},
            )
            failures += [f"{scheme}: {failure}" for failure in result["failures"]]
        page.mouse.move(0, 0)
    page.emulate_media(color_scheme="light")
    assert not failures, f"{where}: " + "; ".join(failures)


# ---------------------------------------------------------------------------------------
# Signing in


def sign_up(page, text, phone, *, wrong_code_first=False, screenshot=None, check_states=False):
    """Type the phone, get the code, read it from the page and type it back.

    Filling the code field puts 4 digits in at once, as a paste or the browser's
    autofill does: the code goes in by itself.
    """
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
    if check_states:
        assert_readable(page, "the code screen", states=True)
    if wrong_code_first:
        code_field.fill(f"{(int(code) + 1) % 10000:04d}")
        error = page.locator("#code-error")
        expect(error).to_have_text(text["wrong_code"])
        expect(code_field).to_be_focused()
        expect(code_field).to_have_attribute("aria-invalid", "true")
        assert beside(code_field, error)
        assert_readable(page, "a wrong code")
        if screenshot:
            shot(*screenshot)
    code_field.fill(code)
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
    assert len(documents) == source.count("export const") == len(set(names)) == 10


@needs_chromium
@served
@pytest.mark.parametrize("lang", ["ru", "en"])
def test_two_people_an_invite_link_and_a_token_expiry(browser, server, screenshots, lang):
    from playwright.sync_api import expect

    text = TEXTS[lang]
    phone_1, phone_2 = PHONES[lang]

    # Person 1 signs up, after one wrong code, and copies their code and the share link.
    first = person(browser, server, lang)
    first.goto("/")
    expect(first.locator("html")).to_have_attribute("lang", lang)
    expect(first.get_by_label(text["phone"])).to_be_focused()
    assert readable(first.locator("#phone-hint").inner_text()) == text["hint"]
    assert_readable(first, "the sign-in screen", states=True)
    shot(first, screenshots, f"client-{lang}-signin.png")
    sign_up(
        first,
        text,
        phone_1,
        wrong_code_first=True,
        screenshot=(first, screenshots, f"client-{lang}-wrong-code.png"),
        check_states=True,
    )
    welcome = first.locator("#notice")
    expect(welcome).to_have_text(text["welcome"])
    expect(first.get_by_text(text["empty"])).to_be_visible()
    assert_readable(first, "the profile", states=True)
    my_code = first.locator("#my-code").inner_text()

    first.get_by_role("button", name=text["copy_code"]).click()
    expect(first.locator("#copied")).to_have_text(text["code_copied"])
    expect(welcome).to_be_hidden()  # the next action makes the welcome old news
    first.get_by_role("button", name=text["copy_link"]).click()
    expect(first.locator("#copied")).to_have_text(text["link_copied"])
    assert_readable(first, "both copy buttons saying they copied")
    for copy_button in ("#copy-code", "#copy-link"):  # still so after the measurement
        expect(first.locator(copy_button)).to_have_class(re.compile(r"\bdone\b"))
    link = first.evaluate("navigator.clipboard.readText()")
    assert link == f"{server}/?invite={my_code}"
    share_link = first.locator("#share-link")
    expect(share_link).to_have_value(link)
    expect_link_shown(share_link)

    if lang == "en":  # ten people join before person 2, so person 2 is on the second page
        sign_up_through(server, SEEDED, my_code)

    # Person 2 opens the link: the invite is filled in, and they join through it.
    second = person(browser, server, lang)
    second.goto(link)
    expect(second.get_by_text(text["invited"].format(code=my_code))).to_be_visible()
    second.get_by_label(text["phone"]).fill(phone_2)
    assert_readable(second, "an invite link opened")
    shot(second, screenshots, f"client-{lang}-invited.png")
    second.get_by_role("button", name=text["get_code"]).click()
    expect(second.get_by_label(text["invite"])).to_have_value(my_code)
    second.get_by_label(text["code"]).fill(second.locator("#debug-code strong").inner_text())
    expect(second.get_by_role("heading", level=1)).to_have_text(text["signed_in"])
    welcome_invited = second.get_by_text(text["welcome_invited"].format(code=my_code))
    expect(welcome_invited).to_be_visible()
    their_code = second.locator("#my-code").inner_text()
    second.get_by_role("button", name=text["refresh"]).click()
    expect(welcome_invited).to_be_hidden()

    # Person 1's access token has expired by now; "Refresh" still just works.
    wait_until_expired(first)
    refreshes = sent(first, "RefreshToken")
    first.get_by_role("button", name=text["refresh"]).click()
    referrals = first.locator("#referrals li")
    expect(first.locator("#referral-count")).to_have_text("11" if lang == "en" else "1")
    assert sent(first, "RefreshToken") == refreshes + 1, first.sent
    if lang == "en":
        expect(referrals).to_have_count(10)
        expect(referrals.filter(has_text=phone_2)).to_have_count(0)
        first.get_by_role("button", name=text["more"]).click()
        expect(referrals).to_have_count(11)
        expect(first.get_by_role("button", name=text["more"])).to_be_hidden()
    expect(referrals.filter(has_text=phone_2)).to_be_visible()
    expect(first.get_by_role("heading", level=1)).to_have_text(text["signed_in"])

    # A code no one has: the error is on the screen with the focus, though the field
    # was at the screen's lower edge (where a phone's keyboard leaves it).
    friend_code = first.get_by_label(text["friend_code"])
    error = first.locator("#activate-error")
    friend_code.fill(NO_ONE_HAS_IT)
    friend_code.evaluate("field => field.scrollIntoView({ block: 'end' })")
    friend_code.press("Enter")
    expect(error).to_have_text(text["not_found"])
    expect(friend_code).to_be_focused()
    assert in_view(first, friend_code, error), (friend_code.bounding_box(), error.bounding_box())

    # Person 2 joined through person 1, so person 1 cannot join through person 2; the
    # access token has expired again, and is refreshed again.
    wait_until_expired(first)
    refreshes = sent(first, "RefreshToken")
    friend_code.fill(their_code)
    first.get_by_role("button", name=text["activate"], exact=True).click()
    expect(error).to_have_text(text["cycle"])
    expect(friend_code).to_be_focused()
    expect(friend_code).to_have_attribute("aria-invalid", "true")
    assert beside(friend_code.locator(".."), error)
    assert in_view(first, friend_code, error), (friend_code.bounding_box(), error.bounding_box())
    expect(first.get_by_role("heading", level=1)).to_have_text(text["signed_in"])
    assert sent(first, "RefreshToken") == refreshes + 1, first.sent
    assert_readable(first, "an invite code refused")
    friend_code.fill("")
    first.locator("#title").focus()
    shot(first, screenshots, f"client-{lang}-profile.png")

    # Every call asked for the page's language.
    assert {language for _, language in first.sent + second.sent} == {lang}

    if lang == "en":
        # The link's end, its code, shows in the field however narrow the screen; on a
        # desktop, the whole link.
        first.set_viewport_size(SMALL_PHONE)
        expect_link_shown(share_link)
        first.set_viewport_size(DESKTOP)
        expect_link_shown(share_link, whole=True)
        assert_readable(first, "the profile on a desktop")
        shot(first, screenshots, "client-en-desktop.png")
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
        assert_readable(first, "signed out")
    assert first.errors == second.errors == []  # no script errors, no CSP refusals
    first.context.close()
    second.context.close()


# WebOTP as a phone's browser offers it: navigator.credentials.get({otp}) resolves with
# the code of an SMS that ends "@domain #code"; here, when the test says the SMS came.
WEBOTP = """
window.OTPCredential = function OTPCredential() {};
const originalGet = navigator.credentials.get.bind(navigator.credentials);
navigator.credentials.get = (options) => {
  if (!options?.otp) return originalGet(options);
  return new Promise((resolve, reject) => {
    window.smsArrives = (code) => resolve({ type: "otp", code });
    options.signal?.addEventListener("abort", () => reject(new DOMException("", "AbortError")));
  });
};
"""


@needs_chromium
@served
@pytest.mark.parametrize("way", ["typed", "pasted", "webotp"])
def test_the_code_goes_in_with_its_4th_digit(browser, server, way):
    """Typed digit by digit, pasted with the SMS around it, or filled in by WebOTP: the
    4th digit signs in, with no button to press (and one VerifyCode)."""
    from playwright.sync_api import expect

    text = TEXTS["en"]
    page = person(browser, server, "en")
    if way == "webotp":
        page.add_init_script(WEBOTP)
    page.goto("/")
    phones = {
        "typed": "+375 29 333-00-01",
        "pasted": "+375 29 333-00-02",
        "webotp": "+375 29 333-00-03",
    }
    page.get_by_label(text["phone"]).fill(phones[way])
    page.get_by_role("button", name=text["get_code"]).click()
    code_field = page.get_by_label(text["code"])
    expect(code_field).to_be_focused()
    code = page.locator("#debug-code strong").inner_text()
    heading = page.get_by_role("heading", level=1)
    if way == "typed":
        # Not while an invite code is half typed: then the person presses "Sign in".
        page.get_by_label(text["invite"]).fill("K7M")
        code_field.press_sequentially(code)
        expect(code_field).to_have_value(code)
        assert page.locator("#verify").get_attribute("aria-busy") is None  # set on submit
        page.get_by_label(text["invite"]).fill("")
        code_field.fill("")
        code_field.press_sequentially(code[:3])
        expect(code_field).to_have_value(code[:3])
        assert page.locator("#verify").get_attribute("aria-busy") is None
        expect(page.locator("#code-error")).to_be_hidden()
        code_field.press_sequentially(code[3])
    elif way == "pasted":
        page.evaluate("sms => navigator.clipboard.writeText(sms)", text["sms"].format(code=code))
        code_field.press("ControlOrMeta+V")
    else:
        page.evaluate("code => window.smsArrives(code)", code)
    expect(heading).to_have_text(text["signed_in"])
    assert sent(page, "VerifyCode") == 1, page.sent
    assert page.errors == []
    page.context.close()


@needs_chromium
@served
def test_signing_out_leaves_no_number_and_no_countdown(browser, server):
    """The next person at this device starts from an empty field and a ready button."""
    from playwright.sync_api import expect

    text = TEXTS["en"]
    page = person(browser, server, "en")
    page.goto("/")
    sign_up(page, text, "+375 29 333-00-11")  # its resend countdown still runs
    page.get_by_role("button", name=text["sign_out"]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(text["sign_in"])
    expect(page.get_by_text(text["signed_out"])).to_be_visible()
    expect(page.get_by_label(text["phone"])).to_have_value("")
    get_code = page.locator("#send")
    expect(get_code).to_have_text(text["get_code"])
    expect(get_code).to_be_enabled()
    expect(page.locator("#back-to-code")).to_be_hidden()
    assert page.errors == []
    page.context.close()


DEVICES = {
    "en": {
        "title": "Devices",
        "current": "This device",
        "sign_out": "Sign out: {device}",
        "others": "Sign out everywhere else",
        "ended": "{device} is signed out.",
        "ended_others": "Signed out on every other device.",
    },
    "ru": {
        "title": "Устройства",
        "current": "Это устройство",
        "sign_out": "Выйти: {device}",
        "others": "Выйти на всех других устройствах",
        "ended": "Выполнен выход на устройстве {device}.",
        "ended_others": "Выполнен выход на всех других устройствах.",
    },
}


@needs_chromium
@served
@pytest.mark.parametrize("lang", ["ru", "en"])
def test_the_devices_panel_marks_this_device_and_signs_out_the_others(browser, server, lang):
    """Signed in here and on two other devices: this one is marked; one other is signed
    out by its own button, the last by "sign out everywhere else"; each at once, and
    this device stays signed in."""
    from playwright.sync_api import expect

    text, devices = TEXTS[lang], DEVICES[lang]
    phone = {"en": "+375 29 444-00-01", "ru": "+375 29 444-00-02"}[lang]
    page = person(browser, server, lang)
    page.goto("/")
    sign_up(page, text, phone)
    user = User.objects.get(phone=phone.replace(" ", "").replace("-", ""))
    others = {
        device: tokens.issue(user=user, device=device, network="192.0.2.0/24")
        for device in ("Safari on iOS", "Firefox on Windows")
    }
    page.get_by_role("button", name=text["refresh"]).click()
    listed = page.locator("#devices li")
    expect(listed).to_have_count(3)
    this_device = listed.filter(has_text=devices["current"])
    expect(this_device).to_have_count(1)
    expect(this_device).to_contain_text("HeadlessChrome on Linux")  # Chromium's own words
    expect(this_device.get_by_role("button")).to_have_count(0)
    assert_readable(page, "the devices panel", states=True)

    page.get_by_role("button", name=devices["sign_out"].format(device="Safari on iOS")).click()
    expect(page.locator("#devices-status")).to_have_text(
        devices["ended"].format(device="Safari on iOS")
    )
    expect(listed).to_have_count(2)
    ended = Session.objects.get(pk=others["Safari on iOS"].session_id)
    assert ended.ended_at is not None
    assert Session.objects.get(pk=others["Firefox on Windows"].session_id).ended_at is None

    page.get_by_role("button", name=devices["others"]).click()
    expect(page.locator("#devices-status")).to_have_text(devices["ended_others"])
    expect(listed).to_have_count(1)
    expect(page.get_by_role("button", name=devices["others"])).to_be_hidden()
    assert list(Session.objects.filter(user=user, ended_at=None)) == [
        Session.objects.get(user=user, device="HeadlessChrome on Linux")
    ]
    # This device is still signed in: after a reload, it is the only one listed.
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text(text["signed_in"])
    expect(listed).to_have_count(1)
    expect(listed).to_contain_text(devices["current"])
    assert page.errors == []
    page.context.close()


@needs_chromium
@served
def test_the_hint_says_what_the_server_takes_with_a_default_region(browser):
    """With PHONE_DEFAULT_REGION, the hint offers that country's local spelling too, and
    the server takes the spelling the hint shows."""
    from playwright.sync_api import expect

    with uvicorn({**SERVER_ENV, "PHONE_DEFAULT_REGION": "BY"}) as region_server:
        for lang in ("ru", "en"):
            text = TEXTS[lang]
            page = person(browser, region_server.url, lang)
            page.goto("/")
            hint = readable(page.locator("#phone-hint").inner_text())
            assert text["country"] in hint, hint
            examples = re.findall(r"(?:e\.g\.|например) ([+0-9][0-9 ()-]*[0-9])", hint)
            assert len(examples) == 2, hint
            international, local = examples
            assert international.startswith("+375 ") and not local.startswith("+"), hint
            if lang == "en":
                page.get_by_label(text["phone"]).fill(local)
                page.get_by_role("button", name=text["get_code"]).click()
                expect(page.get_by_role("heading", level=1)).to_have_text(text["enter_code"])
                expect(page.locator("#lead")).to_contain_text(international)
            assert page.errors == []
            page.context.close()


# ---------------------------------------------------------------------------------------
# The admin

ADMIN_PHONE = "+375291112233"
ADMIN_PASSWORD = "a-long-admin-password-for-tests"


def staff_page(browser, server):
    User.objects.create_superuser(ADMIN_PHONE, ADMIN_PASSWORD)
    page = browser.new_page(base_url=server, viewport=DESKTOP)
    page.goto("/admin/login/")
    return page


def sign_in_to_admin(page, login):
    """Type the phone key by key (as a person does: the field's maxlength applies)."""
    from playwright.sync_api import expect

    page.locator("#id_username").press_sequentially(login)
    expect(page.locator("#id_username")).to_have_value(login)
    expect(page.locator("#id_username")).to_have_attribute("maxlength", str(MAX_PHONE_INPUT))
    page.locator("#id_password").fill(ADMIN_PASSWORD)
    page.locator("input[type=submit]").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()


@needs_chromium
@served
def test_the_admin_sign_in_takes_the_number_as_people_write_it(browser, server):
    """Any spelling the API takes (up to its 32 characters) fits in the login field."""
    page = staff_page(browser, server)
    sign_in_to_admin(page, "+375 29 111-22-33")  # 17 characters, as README writes numbers
    page.context.close()


@needs_chromium
@served
def test_the_admin_user_list_fits_a_1280_px_screen(browser, server):
    page = staff_page(browser, server)
    inviter = User.objects.get(phone=ADMIN_PHONE)
    for index in range(25):
        User.objects.create_user(
            f"+37544{index:07d}", invited_by=inviter, invite_activated_at=timezone.now()
        )
    sign_in_to_admin(page, ADMIN_PHONE)
    page.goto("/admin/users/user/")
    widths = page.evaluate(
        """() => {
          const results = document.querySelector("#changelist .results");
          return {
            page: [document.documentElement.scrollWidth, innerWidth],
            list: [results.scrollWidth, results.clientWidth],
            columns: [...document.querySelectorAll("#result_list th")].map(
              (th) => [th.textContent.trim(), Math.round(th.getBoundingClientRect().right)]),
          };
        }"""
    )
    assert widths["page"][0] <= widths["page"][1], widths
    assert widths["list"][0] <= widths["list"][1], widths
    assert all(right <= DESKTOP["width"] for _, right in widths["columns"]), widths
    page.context.close()


@needs_chromium
@served
def test_the_referral_dashboard_loads_nothing_from_another_host(browser, server, screenshots):
    """A month of a referral program, as staff open its dashboard: two charts and the
    top referrers, drawn from this server alone (every request the page makes is
    counted), in a screenshot for the docs."""
    from playwright.sync_api import expect

    from users.models import Activation, SignInEvent
    from users.services import invites

    page = staff_page(browser, server)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    people = [User.objects.create_user(f"+37529{n + 1}{n:02d}{n * 1111:04d}") for n in range(6)]
    SignInEvent.objects.create(user=people[0], outcome="signed_in", network="10.1.2.0/24")
    for n in range(60):
        person = User.objects.create_user(f"+37544{n:03d}{(n * 37) % 10000:04d}")
        days = (n * 13) % 28
        if n % 3:  # two in three joined through a friend's code
            network = "10.1.2.0/24" if n % 5 == 1 else f"192.0.{n}.0/24"
            invites.activate_invite(
                user_id=person.pk, invite_code=people[n % 4].invite_code, network=network
            )
            Activation.objects.filter(referee=person).update(
                activated_at=timezone.now() - timedelta(days=days), via="sign_in"
            )
        User.objects.filter(pk=person.pk).update(date_joined=timezone.now() - timedelta(days=days))
    User.objects.filter(pk__in=[p.pk for p in people]).update(
        date_joined=timezone.now() - timedelta(days=40)
    )
    sign_in_to_admin(page, ADMIN_PHONE)
    page.goto("/admin/users/activation/dashboard/")
    expect(page.get_by_role("heading", name="Top referrers")).to_be_visible()
    expect(page.locator("svg[role=img]")).to_have_count(2)
    page.wait_for_load_state("networkidle")
    shot(page, screenshots, "admin-referrals.png")
    foreign = [url for url in requests if not url.startswith(server)]
    assert requests and not foreign, foreign
    page.context.close()


@needs_chromium
@served
def test_a_friend_who_joins_appears_on_the_referrers_page_at_once(browser):
    """The referrer's profile is open; a friend signs up with their code elsewhere: the
    page shows them, and the count, without a reload (the referralAdded subscription)."""
    from playwright.sync_api import expect

    text = TEXTS["en"]
    with uvicorn({**SERVER_ENV, "JWT_EXPIRATION": "900"}) as running:
        page = person(browser, running.url, "en")
        page.goto("/")
        sign_up(page, text, "+375 29 333-00-01")
        expect(page.locator("#referrals-empty")).to_be_visible()
        code = User.objects.get(phone="+375293330001").invite_code
        loads = page.evaluate("performance.getEntriesByType('navigation').length")
        sign_up_through(running.url, ["+375293330002"], code)
        expect(page.locator("#referral-count")).to_have_text("1", timeout=30_000)
        expect(page.locator("#referrals")).to_contain_text("+375 29 333-00-02")
        expect(
            page.get_by_text("+375 29 333-00-02 has just joined with your code.")
        ).to_be_visible()
        assert page.evaluate("performance.getEntriesByType('navigation').length") == loads
        assert sent(page, "Me") == 1, page.sent  # no second read of the profile
        assert page.errors == []
        page.context.close()
