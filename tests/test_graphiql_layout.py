"""GraphiQL's walk-through reads without scrolling sideways in a desktop window.

In a real browser (Debian's Chromium), at the window sizes people use on a desktop,
every line of the example document ends inside the query editor's visible width.
"""

import pytest

from tests.servers import CHROMIUM, CHROMIUM_ARGS, served, start_server

# How far each line of the query editor runs past its visible right edge, in pixels,
# and the longest line: the edge is the vertical scrollbar's left side when there is one.
OVERFLOW = """() => {
  const root = document.querySelector('.graphiql-query-editor .CodeMirror');
  const editor = root.CodeMirror;
  const bar = root.querySelector('.CodeMirror-vscrollbar');
  const edge = bar && bar.offsetWidth
    ? bar.getBoundingClientRect().left
    : root.getBoundingClientRect().right;
  let worst = -Infinity, line = '';
  for (let i = 0; i < editor.lineCount(); i++) {
    const text = editor.getLine(i);
    const right = editor.charCoords({line: i, ch: text.length}, 'window').right;
    if (right - edge > worst) { worst = right - edge; line = text; }
  }
  return {overflow: worst, line: line, lines: editor.lineCount()};
}"""

WINDOWS = [(1280, 800), (1440, 900), (1920, 1080)]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
@served
def test_every_line_of_the_walk_through_fits_the_editor():
    from playwright.sync_api import sync_playwright

    measured = {}
    with start_server({"GRAPHIQL": "1"}) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for width, height in WINDOWS:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(f"{server.url}/graphql/")
                page.wait_for_selector(".graphiql-query-editor .CodeMirror-code .CodeMirror-line")
                measured[width, height] = page.evaluate(OVERFLOW)
                page.close()
        finally:
            browser.close()
    for window, result in measured.items():
        assert result["lines"] > 50, (window, result)  # the walk-through, not an empty editor
        assert result["overflow"] <= 0, (window, result)
