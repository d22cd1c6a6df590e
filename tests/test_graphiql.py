"""GraphiQL: served whole by this server, no other host in the page, opening on sign-in.

The page and its files are checked through a real uvicorn started as operators run it
(DEBUG off, after collectstatic), with GRAPHIQL on.
"""

import json
import re
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from django.conf import settings
from graphql import OperationDefinitionNode, parse, validate

from schema.graphiql import EXAMPLE_DOCUMENT, EXAMPLE_HEADERS, EXAMPLE_VARIABLES
from schema.schema import schema
from tests.servers import CHROMIUM, CHROMIUM_ARGS, served, start_server

HASHED_NAME = re.compile(r"\.[0-9a-f]{12}\.\w+$")


def get(url, **headers):
    """(status, headers, body) of a GET, error statuses included."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.fixture(scope="module")
def server(django_db_setup):
    manifest = Path(settings.STATIC_ROOT, "staticfiles.json")
    if not manifest.exists() or "graphiql/page.js" not in manifest.read_text():
        pytest.fail("run `manage.py collectstatic` first (make test does)")
    with start_server({"GRAPHIQL": "1", "SMS_SIMULATED_DELAY": "0"}) as running:
        yield running


def port_of(server):
    return urlsplit(server.url).port


class Links(HTMLParser):
    """Every src and href in a page, with the tag and rel it is on."""

    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name in ("src", "href"):
            if attributes.get(name) is not None:
                self.links.append((tag, attributes.get("rel"), attributes[name]))


def ide_page(server):
    return get(f"{server.url}/graphql/", Accept="text/html")


def test_the_page_and_everything_it_loads_come_from_this_server(server):
    status, headers, body = ide_page(server)
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert "://" not in page, "the page names another host"
    parser = Links()
    parser.feed(page)
    scripts = [url for tag, _, url in parser.links if tag == "script"]
    styles = [url for tag, rel, url in parser.links if tag == "link" and rel == "stylesheet"]
    assert len(scripts) == 4 and len(styles) == 2, parser.links

    for tag, _, link in parser.links:
        url = urljoin(f"{server.url}/graphql/", link)
        assert urlsplit(url).netloc == f"127.0.0.1:{port_of(server)}", link
        assert HASHED_NAME.search(link), f"{link} is not under a hashed, long-cached name"
        status, headers, _ = get(url)
        assert status == 200, link
        if tag == "script":
            assert "javascript" in headers["Content-Type"], link
        if link in styles:
            assert headers["Content-Type"].startswith("text/css"), link


def test_the_page_allows_only_this_server_in_its_content_security_policy(server):
    _, headers, _ = ide_page(server)
    directives = dict(
        (d.split()[0], d.split()[1:]) for d in headers["Content-Security-Policy"].split(";")
    )
    assert directives["default-src"] == ["'none'"]
    for name in ("script-src", "connect-src", "img-src"):
        assert directives[name] == ["'self'"], name
    assert directives["style-src"][0] == "'self'"
    assert all(source.startswith("'sha256-") for source in directives["style-src"][1:])
    assert directives["font-src"] == ["'self'", "data:"]  # GraphiQL's CSS embeds its fonts


def test_static_css_is_compressed_and_cached_for_a_year_under_its_hashed_name(server):
    _, _, body = ide_page(server)
    parser = Links()
    parser.feed(body.decode())
    css = next(url for tag, rel, url in parser.links if url.endswith(".css"))
    status, headers, _ = get(f"{server.url}{css}", **{"Accept-Encoding": "gzip"})
    assert status == 200
    cache_control = headers["Cache-Control"]
    assert int(re.search(r"max-age=(\d+)", cache_control)[1]) >= 365 * 24 * 3600
    assert "immutable" in cache_control
    assert headers["Content-Encoding"] == "gzip"


def test_no_ide_page_with_graphiql_off(django_db_setup):
    with start_server({"GRAPHIQL": "0"}) as off:
        status, _, body = ide_page(off)
    assert status == 404
    assert b"graphiql" not in body.lower()


def test_the_example_is_named_operations_valid_against_the_schema():
    document = parse(EXAMPLE_DOCUMENT)
    assert validate(schema._schema, document) == []
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    assert [o.name.value for o in operations] == [
        "SendCode",
        "VerifyCode",
        "Me",
        "ActivateInvite",
        "RefreshToken",
        "RevokeToken",
    ]
    declared = {v.variable.name.value for o in operations for v in o.variable_definitions}
    assert declared == set(EXAMPLE_VARIABLES)
    assert EXAMPLE_HEADERS == {"Authorization": "Bearer <token>"}


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
@served  # the server writes a code: the test database is emptied after
def test_graphiql_runs_send_code_in_a_real_browser(server):
    """Loads with no failed request and no console error, runs SendCode, opens Settings."""
    from playwright.sync_api import sync_playwright

    problems, hosts = [], set()

    def on_response(response):
        if response.status >= 400:
            problems.append(f"{response.url}: {response.status}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc))
            page.on("requestfailed", lambda r: problems.append(f"{r.url}: {r.failure}"))
            page.on("response", on_response)
            page.on("console", lambda m: m.type == "error" and problems.append(m.text[:300]))
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(f"{server.url}/graphql/")

            # The cursor inside SendCode, then Ctrl-Enter, as the example's comment says.
            page.locator(".graphiql-query-editor .CodeMirror-line").filter(
                has_text="mutation SendCode"
            ).click(position={"x": 40, "y": 8})
            page.keyboard.press("Control+Enter")
            answer = None
            for _ in range(100):  # polled: the page's CSP refuses wait_for_function's eval
                text = page.evaluate(
                    "document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"
                )
                if "sendCode" in text:
                    answer = json.loads(text)["data"]["sendCode"]
                    break
                page.wait_for_timeout(100)

            # The dialog adds the <style> whose hash the CSP allows.
            page.click("button[aria-label='Open settings dialog']")
            page.wait_for_selector("text=Clear storage")
            page.keyboard.press("Escape")
            page.wait_for_timeout(200)
        finally:
            browser.close()

    assert answer is not None, "SendCode gave no answer"
    assert answer["userErrors"] == []
    assert re.fullmatch(r"\d{4}", answer["debugCode"])
    assert problems == []
    assert hosts == {f"127.0.0.1:{port_of(server)}"}
