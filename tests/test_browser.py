"""
Pages for people, in a real browser: Debian's Chromium driven by selenium
against a live daemon on loopback. Search with the keyboard, follow links,
copy the install line, download a file and check its sha256, look at the
pages at phone and desktop widths in light and dark mode (nothing may
overflow the page horizontally), move through them with Tab, and a private
repository that asks for credentials.

CI installs chromium and chromedriver with apt-get (.ci/run); without them
these tests fail, they do not skip.
"""

import base64
import hashlib
import io
import os
import pathlib
import re
import shutil
import urllib.parse
import zipfile

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import PROJECT, Daemon, get, make_corpus

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS_FOR_PEOPLE = os.path.join(PROJECT, "bench", "out", "screenshots")
# Resolves to loopback, but is not a secure context as 127.0.0.1 is: what a
# person sees on http://HOST:8888/ (the README's deployment).
PLAIN_HTTP_HOST = "ppypi.test"

PHONE = (390, 844)
DESKTOP = (1280, 800)

# The corpus: make_corpus's demo-pkg-00000..00002 (1.0.0 and 1.1.0, wheel and
# sdist each), and long-readme (1.0, 2.0) with a long markdown description
# and an unbroken word in its summary longer than any screen.
LONG_WORD = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 6
LONG_SUMMARY = f"A summary with {LONG_WORD} in it"
LONG_DESCRIPTION = "\n".join([
    "# long-readme",
    "",
    "A package whose description has everything a README has.",
    "",
    "## Install",
    "",
    "```",
    "pip install --index-url http://ppypi.example/simple/ long-readme "
    + "--extra-option=" + "x" * 200,
    "```",
    "",
    "## A wide table",
    "",
    "| " + " | ".join(f"column {i}" for i in range(10)) + " |",
    "|" + "---|" * 10,
    "| " + " | ".join(f"`value_{i}_{'y' * 20}`" for i in range(10)) + " |",
    "",
    "## A long link",
    "",
    "See https://docs.example/" + "/".join(["segment"] * 30) + " for details, or [the "
    "documentation](https://docs.example/" + "a" * 150 + ").",
    "",
    "## An unbroken word",
    "",
    LONG_WORD,
    "",
    "> A quotation that goes on " + "and on " * 40 + "and ends.",
    "",
    *[f"## Section {i}\n\n" + ("Some ordinary prose, wrapped as prose is. " * 12) + "\n\n"
      f"- item one of section {i}\n- item two with `inline_code_{'z' * 60}`\n"
      for i in range(8)],
])


def long_readme_wheel(version):
    dist = "long_readme"
    meta = (
        "Metadata-Version: 2.1\n"
        f"Name: long-readme\nVersion: {version}\n"
        f"Summary: {LONG_SUMMARY}\n"
        "License: MIT\n"
        "Author: Alice Example\n"
        "Author-email: alice@example.invalid\n"
        "Requires-Python: >=3.9\n"
        "Requires-Dist: requests>=2.31\n"
        "Requires-Dist: an-extremely-long-dependency-name-" + "q" * 80 + " ; extra == 'all'\n"
        "Project-URL: Documentation, https://docs.example/" + "d" * 120 + "\n"
        "Project-URL: Source, https://git.example/long-readme\n"
        "Classifier: Programming Language :: Python :: 3\n"
        "Classifier: License :: OSI Approved :: MIT License\n"
        "Description-Content-Type: text/markdown\n\n"
        + LONG_DESCRIPTION + "\n"
    ).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{dist}-{version}.dist-info/METADATA", meta)
        z.writestr(f"{dist}-{version}.dist-info/WHEEL",
                   b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                   b"Tag: py3-none-any\n")
        z.writestr(f"{dist}/__init__.py", b"")
    return f"{dist}-{version}-py3-none-any.whl", buf.getvalue()


# -- fixtures


def _require_browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: the browser tests need Debian's "
                    "chromium and chromedriver (apt-get install chromium chromium-driver; "
                    ".ci/run does it)", pytrace=False)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _require_browser()
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                 "--no-proxy-server", "--window-size=1280,800",
                 # Loopback only: every host name but ours fails to resolve.
                 f"--host-resolver-rules=MAP {PLAIN_HTTP_HOST} 127.0.0.1, MAP * ~NOTFOUND, "
                 "EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A live daemon serving the corpus (module scope: one for every test here)."""
    root = tmp_path_factory.mktemp("site") / "root"
    make_corpus(root, projects=3, versions=2, sdist=True, prefix="Demo")
    for version in ("1.0", "2.0"):
        filename, data = long_readme_wheel(version)
        (root / filename).write_bytes(data)
    daemon = Daemon(root, "--extra-index-url", "")
    try:
        yield daemon.start()
    finally:
        daemon.stop()  # also when it never got ready


@pytest.fixture
def page(browser):
    """The browser, back to a plain desktop window after each test."""
    yield browser
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "", "features": []})
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "default"})
    browser.execute_cdp_cmd("Browser.resetPermissions", {})


# -- helpers


def wait(driver, timeout=10):
    return WebDriverWait(driver, timeout)


def load(driver, url):
    driver.get(url)
    wait(driver).until(lambda d: d.execute_script("return document.readyState") == "complete")
    return driver


def severe_console_messages(driver):
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]]


def rgb(css_colour):
    m = re.match(r"rgba?\(([\d.]+), ([\d.]+), ([\d.]+)(?:, ([\d.]+))?\)", css_colour)
    assert m, css_colour
    return tuple(float(c) for c in m.groups()[:3])


def luminance(colour):
    """WCAG relative luminance of an (r, g, b) in 0..255."""
    def channel(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b):
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


COLOURS_JS = """
function bg(el) {
  for (; el; el = el.parentElement) {
    var c = getComputedStyle(el).backgroundColor;
    if (c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c;
  }
  return getComputedStyle(document.documentElement).backgroundColor;
}
var out = [];
arguments[0].forEach(function(sel) {
  document.querySelectorAll(sel).forEach(function(el, i) {
    if (i < 3) out.push([sel, getComputedStyle(el).color, bg(el)]);
  });
});
return out;
"""

OVERFLOW_JS = """
// What sticks out of the page on the right: boxes, and text (a word too long
// for its box overflows the box without widening it). Whatever is inside a
// box that scrolls (or clips) on its own is allowed.
var root = document.documentElement, limit = root.clientWidth, culprits = [];
function scrolls(el) {
  for (var p = el; p && p !== root && p !== document.body; p = p.parentElement) {
    var o = getComputedStyle(p).overflowX;
    if (o === 'auto' || o === 'scroll' || o === 'hidden' || o === 'clip') return true;
  }
  return false;
}
function describe(el) {
  var id = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
           (el.className ? '.' + el.className : ''), path = [];
  for (var p = el.parentElement; p && p !== document.body && path.length < 3; p = p.parentElement)
    path.unshift(p.tagName.toLowerCase() + (p.className ? '.' + p.className : ''));
  return path.concat([id]).join(' > ');
}
document.querySelectorAll('body *').forEach(function(el) {
  if (el.getBoundingClientRect().right > limit + 0.5 && !scrolls(el.parentElement))
    culprits.push(describe(el) + ' (box)');
});
var walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT), node;
while ((node = walker.nextNode())) {
  if (!node.textContent.trim()) continue;
  var range = document.createRange();
  range.selectNodeContents(node);
  var right = range.getBoundingClientRect().right;
  if (right > limit + 0.5 && !scrolls(node.parentElement))
    culprits.push(describe(node.parentElement) + ' text ends at ' + Math.round(right) + 'px: ' +
                  JSON.stringify(node.textContent.trim().slice(0, 40) + '...'));
}
return {scrollWidth: root.scrollWidth, clientWidth: limit, innerWidth: window.innerWidth,
        culprits: culprits.slice(0, 6)};
"""


def emulate(driver, size, mobile, dark=False):
    width, height = size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 2 if mobile else 1,
        "mobile": mobile})
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "", "features": [
        {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})


def full_page_png(driver, max_height=4000):
    """The page from the top, as wide as the screen (what sticks out is cut
    off, as a person sees it at scale 1) and as long as it is, up to max_height."""
    width, height = driver.execute_script(
        "return [document.documentElement.clientWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(height, max_height), "scale": 1}})
    return base64.b64decode(shot["data"])


def assert_no_horizontal_overflow(driver, what):
    m = driver.execute_script(OVERFLOW_JS)
    # clientWidth, not innerWidth: a phone zooms out to show a page wider than
    # itself, and innerWidth grows with it (to 4 times the screen here).
    assert m["scrollWidth"] <= m["clientWidth"], (
        f"{what}: the page scrolls sideways ({m['scrollWidth']}px of content in a "
        f"{m['clientWidth']}px viewport); wider than the page: {m['culprits']}")


# -- 1. search with the keyboard, follow the links


def test_search_with_the_keyboard_and_follow_links(site, page):
    load(page, site.url)
    label = page.find_element(By.XPATH, "//label[normalize-space()='Search projects']")
    box = page.find_element(By.ID, label.get_attribute("for"))
    assert box.get_attribute("id") == "q" and box.get_attribute("type") == "search"
    box.send_keys("00001", Keys.ENTER)
    wait(page).until(EC.url_contains("?q=00001"))
    assert page.find_element(By.TAG_NAME, "h1").text == "1 result for 00001"
    assert page.find_element(By.CSS_SELECTOR, "h1 q").text == "00001"  # quoted by CSS
    results = page.find_elements(By.CSS_SELECTOR, "ul.projects li a")
    assert [a.text for a in results] == ["demo-pkg-00001"]
    assert page.find_element(By.ID, "q").get_attribute("value") == "00001"  # kept in the box

    results[0].click()
    wait(page).until(EC.url_to_be(site.url + "project/demo-pkg-00001/"))
    assert page.find_element(By.TAG_NAME, "h1").text == "demo-pkg-00001 1.1.0"
    assert page.find_element(By.ID, "install-line").text == \
        f"pip install --index-url {site.url}simple/ demo-pkg-00001"

    page.find_element(By.LINK_TEXT, "1.0.0").click()
    wait(page).until(EC.url_to_be(site.url + "project/demo-pkg-00001/1.0.0/"))
    assert page.find_element(By.TAG_NAME, "h1").text == "demo-pkg-00001 1.0.0"
    assert page.title == "demo-pkg-00001 1.0.0 · ppypi: default"
    assert page.find_element(By.ID, "install-line").text.endswith(" demo-pkg-00001==1.0.0")
    files = [a.text for a in page.find_elements(By.CSS_SELECTOR, ".table td a")
             if "/packages/" in a.get_attribute("href")]
    assert files == ["demo_pkg_00001-1.0.0-py3-none-any.whl", "demo_pkg_00001-1.0.0.tar.gz"]
    # The inline script and style are allowed by the page's own policy.
    assert severe_console_messages(page) == []


def test_search_for_nothing_and_for_markup(site, page):
    load(page, site.url)
    page.find_element(By.ID, "q").send_keys("<b>nothing</b>", Keys.ENTER)
    wait(page).until(EC.url_contains("?q="))
    assert page.find_element(By.CSS_SELECTOR, "h1 q").text == "<b>nothing</b>"
    assert page.find_elements(By.CSS_SELECTOR, "h1 b") == []
    assert page.find_elements(By.CSS_SELECTOR, "ul.projects li") == []


# -- 2. copy the install line


def _clipboard(driver):
    return driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, function(e) { done('ERROR: ' + e); });")


def _grant_clipboard(driver, origin):
    driver.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})


def test_copy_the_install_line(site, page):
    _grant_clipboard(page, site.url.rstrip("/"))
    load(page, site.url + "project/long-readme/")
    page.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "navigator.clipboard.writeText('before').then(done, done);")
    button = page.find_element(By.CSS_SELECTOR, "button[data-copy=install-line]")
    assert button.text == "Copy"
    assert button.get_attribute("aria-label") == "Copy the install command"
    button.click()
    wait(page).until(EC.text_to_be_present_in_element(
        (By.CSS_SELECTOR, "button[data-copy=install-line]"), "Copied"))
    line = page.find_element(By.ID, "install-line").text
    assert line == f"pip install --index-url {site.url}simple/ long-readme"
    assert _clipboard(page) == line


@pytest.mark.parametrize("how", ["plain-http", "refused"])
def test_copy_button_says_copied_only_when_it_copied(site, page, how):
    secure = site.url.rstrip("/")
    _grant_clipboard(page, secure)
    load(page, site.url)
    page.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "navigator.clipboard.writeText('before').then(done, done);")
    if how == "plain-http":
        base = f"http://{PLAIN_HTTP_HOST}:{site.port}/"
        load(page, base + "project/long-readme/")
        assert page.execute_script("return window.isSecureContext") is False
    else:
        base = site.url
        load(page, base + "project/long-readme/")
        page.execute_script(
            "navigator.clipboard.writeText = function() {"
            "  return Promise.reject(new DOMException('refused', 'NotAllowedError')); };")
    line = page.find_element(By.ID, "install-line").text
    assert line == f"pip install --index-url {base}simple/ long-readme"
    page.find_element(By.CSS_SELECTOR, "button[data-copy=install-line]").click()
    # The script answers at once, or after writeText settles: give it that long.
    try:
        wait(page, 2).until(EC.text_to_be_present_in_element(
            (By.CSS_SELECTOR, "button[data-copy=install-line]"), "Copied"))
    except TimeoutException:
        pass
    label = page.find_element(By.CSS_SELECTOR, "button[data-copy=install-line]").text
    load(page, site.url)  # the clipboard is read from a secure page
    copied = _clipboard(page)
    assert label != "Copied" or copied == line, (
        f"the button says {label!r}, the clipboard holds {copied!r}")


# -- 3. download a file


@pytest.mark.parametrize("suffix", [".whl", ".tar.gz"])
def test_download_a_file_and_check_its_sha256(site, page, tmp_path, suffix):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    page.execute_cdp_cmd("Browser.setDownloadBehavior", {
        "behavior": "allow", "downloadPath": str(downloads), "eventsEnabled": True})
    load(page, site.url + "project/demo-pkg-00002/")
    row = next(r for r in page.find_elements(By.CSS_SELECTOR, ".table tbody tr")
               if r.find_element(By.TAG_NAME, "a").text.endswith(suffix))
    link = row.find_element(By.TAG_NAME, "a")
    filename = link.text
    assert link.get_attribute("href") == f"{site.url}packages/demo-pkg-00002/{filename}"
    shown = row.find_element(By.CSS_SELECTOR, "td.hash").text
    assert re.fullmatch(r"[0-9a-f]{64}", shown), shown
    link.click()
    target = downloads / filename

    def downloaded(_):
        names = os.listdir(downloads)
        return target.exists() and not any(n.endswith(".crdownload") for n in names)
    wait(page, 20).until(downloaded, f"{filename} never appeared in {downloads}")
    data = target.read_bytes()
    assert hashlib.sha256(data).hexdigest() == shown
    # And it is the file the server holds.
    assert data == (pathlib.Path(site.root) / filename).read_bytes()
    # The page stays where it was: a download is not a navigation.
    assert page.current_url == site.url + "project/demo-pkg-00002/"


# -- 4. phone and desktop, light and dark: nothing wider than the screen


PAGES_TO_LOOK_AT = [
    pytest.param("home", "", id="home"),
    pytest.param("search", "?q=long", id="search"),
    pytest.param("project", "project/long-readme/", id="project"),
    pytest.param("version", "project/long-readme/1.0/", id="version"),
]
DEVICES = [("phone", PHONE, True), ("desktop", DESKTOP, False)]


def overflow_problems(driver, what):
    try:
        assert_no_horizontal_overflow(driver, what)
    except AssertionError as e:
        return [str(e)]
    return []


@pytest.mark.parametrize("mode", ["light", "dark"])
@pytest.mark.parametrize("name, path", PAGES_TO_LOOK_AT)
def test_page_fits_phone_and_desktop(site, page, tmp_path, name, path, mode):
    problems = []
    for device, size, mobile in DEVICES:
        emulate(page, size, mobile, dark=mode == "dark")
        load(page, site.url + path)
        assert page.execute_script("return document.documentElement.clientWidth") <= size[0]
        shot = tmp_path / f"{name}-{device}-{mode}.png"
        shot.write_bytes(full_page_png(page))
        if name == "project" and mode == "light":  # for a person to look at
            os.makedirs(SCREENSHOTS_FOR_PEOPLE, exist_ok=True)
            shutil.copy(shot, os.path.join(SCREENSHOTS_FOR_PEOPLE, shot.name))
        problems += overflow_problems(page, f"{name} on a {device} ({mode})")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", ["project/long-readme/", "project/long-readme/1.0/"])
def test_the_rest_of_a_project_page_fits(site, page, path):
    """The summary made to wrap by the test itself, and the rest: the description's
    wide table, long code lines, links and words, the metadata, the tables."""
    problems = []
    for device, size, mobile in DEVICES:
        emulate(page, size, mobile)
        load(page, site.url + path)
        summary = page.find_element(By.CSS_SELECTOR, "main > h1 + p")
        assert summary.text == LONG_SUMMARY
        page.execute_script("arguments[0].style.overflowWrap = 'anywhere'", summary)
        problems += overflow_problems(page, f"{path} on a {device}")
        # The file and version tables scroll inside their own box, if at all.
        assert len(page.find_elements(By.CSS_SELECTOR, "div.table > table")) == 2
    assert not problems, "\n".join(problems)


# -- the tables of files and versions keep their words whole


TABLE_WORDS_JS = """
// For each cell of the tables (div.table): its width and line count, its
// longest word, and the words the browser broke over lines or let stick out
// of the cell although they fit in the table's box. A word runs to a space,
// or to just after a hyphen (where a line may break); a word wider than the
// box has to be broken, and is not counted.
var probe = document.createElement('span');
probe.style.cssText = 'position:absolute;visibility:hidden;white-space:nowrap;left:0;top:0';
document.body.appendChild(probe);
function width(text, el) {
  var s = getComputedStyle(el);
  probe.style.font = s.font;
  probe.style.letterSpacing = s.letterSpacing;
  probe.textContent = text;
  return probe.getBoundingClientRect().width;
}
var cells = [];
document.querySelectorAll('div.table td').forEach(function(td) {
  var box = td.closest('div.table'), ts = getComputedStyle(td), rect = td.getBoundingClientRect();
  var right = rect.right - parseFloat(ts.paddingRight) - parseFloat(ts.borderRightWidth);
  var cell = {table: box.querySelector('th') ? box.querySelector('th').textContent : '',
              column: td.cellIndex, text: td.textContent.trim().slice(0, 40),
              width: rect.width - parseFloat(ts.paddingLeft) - parseFloat(ts.paddingRight),
              room: box.clientWidth, longest: 0, lineHeight: parseFloat(ts.lineHeight),
              broken: [], out: []};
  var tops = new Set(), walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT), node;
  while ((node = walker.nextNode())) {
    var re = /[^\\s-]+-?|-/g, m;
    while ((m = re.exec(node.data))) {
      var range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      var rects = Array.from(range.getClientRects()).filter(function(r) { return r.width > 0; });
      var lines = new Set(rects.map(function(r) { return Math.round(r.top); }));
      lines.forEach(function(t) { tops.add(t); });
      var w = width(m[0], node.parentElement);
      cell.longest = Math.max(cell.longest, Math.min(w, box.clientWidth));
      if (w > box.clientWidth) continue;
      if (lines.size > 1) cell.broken.push(m[0]);
      if (rects.some(function(r) { return r.right > right + 0.5; })) cell.out.push(m[0]);
    }
  }
  cell.lines = tops.size;
  cells.push(cell);
});
probe.remove();
return cells;
"""


@pytest.mark.parametrize("device, size, mobile", DEVICES, ids=[d[0] for d in DEVICES])
@pytest.mark.parametrize("path", ["project/demo-pkg-00001/", "project/long-readme/1.0/"])
def test_table_cells_keep_their_words_whole(site, page, tmp_path, device, size, mobile, path):
    """"wheel" was "whee / l" at 1280 px, and every column a few letters wide
    at 390 px: no word is broken or sticks out of its cell where it fits, no
    column is narrower than its longest word (or than the box, for the
    sha256, which is wider than a phone), and the page does not scroll
    sideways."""
    emulate(page, size, mobile)
    load(page, site.url + path)
    (tmp_path / f"files-{device}.png").write_bytes(full_page_png(page))
    cells = page.execute_script(TABLE_WORDS_JS)
    files = [c for c in cells if c["table"] == "File"]
    assert files and len(files) % 4 == 0, cells
    broken = [(c["text"], c["broken"], c["out"]) for c in cells
              if c["column"] != 3 and (c["broken"] or c["out"])]
    assert broken == [], broken
    narrow = [(c["text"], round(c["width"]), round(c["longest"])) for c in cells
              if c["width"] + 0.5 < c["longest"]]
    assert narrow == [], narrow
    # The type ("wheel", "sdist") and the size on one line each.
    short = [c for c in files if c["column"] in (1, 2)]
    assert all(c["lines"] == 1 for c in short), [(c["text"], c["lines"]) for c in short]
    if device == "desktop":
        for row in page.find_elements(By.CSS_SELECTOR, "div.table table tbody tr"):
            kind = row.find_elements(By.TAG_NAME, "td")[1]
            if kind.text == "wheel":
                line = page.execute_script(
                    "var r = document.createRange(); r.selectNodeContents(arguments[0]);"
                    "return [r.getBoundingClientRect().height,"
                    " parseFloat(getComputedStyle(arguments[0]).lineHeight)];", kind)
                assert line[0] <= line[1] + 0.5, line
                break
        else:
            pytest.fail("no wheel on the page")
    assert_no_horizontal_overflow(page, f"{path} on a {device}")


# -- 5. dark mode


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_colour_scheme_follows_the_system_and_text_is_readable(site, page, dark):
    emulate(page, DESKTOP, False, dark)
    load(page, site.url + "project/long-readme/")
    assert page.execute_script(
        "return matchMedia('(prefers-color-scheme: dark)').matches") is dark
    background = luminance(rgb(page.execute_script(
        "return getComputedStyle(document.body).backgroundColor")))
    if dark:
        assert background < 0.2, background
    else:
        assert background > 0.8, background
    # Every kind of text on the page, against what is behind it: WCAG AA (4.5:1).
    selectors = ["h1", "p", ".muted", "a", "pre", "code", "th", "td", "dt", "dd", "button",
                 "input", ".description p", ".description a", ".description pre",
                 ".description code", ".description blockquote"]
    seen = page.execute_script(COLOURS_JS, selectors)
    assert {s for s, _, _ in seen} == set(selectors), seen
    low = [(s, fg, bg, round(contrast(rgb(fg), rgb(bg)), 2)) for s, fg, bg in seen
           if contrast(rgb(fg), rgb(bg)) < 4.5]
    assert low == [], low
    # A form control the system styles must follow the scheme too.
    field = luminance(rgb(page.execute_script(
        "return getComputedStyle(document.getElementById('q')).backgroundColor")))
    assert (field < 0.2) if dark else (field > 0.8), field


# -- 6. the keyboard


FOCUS_JS = """
var el = document.activeElement, s = getComputedStyle(el);
return {tag: el.tagName.toLowerCase(), id: el.id, type: el.getAttribute('type'),
        href: el.getAttribute('href'), text: (el.textContent || '').trim(),
        outline: s.outlineStyle, width: parseFloat(s.outlineWidth)};
"""


def tab(driver):
    ActionChains(driver).send_keys(Keys.TAB).perform()
    return driver.execute_script(FOCUS_JS)


def test_tab_reaches_search_then_links_with_a_visible_focus(site, page):
    load(page, site.url)
    assert page.execute_script("return document.activeElement === document.body")
    order = [tab(page) for _ in range(6)]
    described = [(f["tag"], f["id"] or f["type"] or f["href"]) for f in order]
    assert described[:3] == [("a", site.url), ("input", "q"), ("button", "submit")], described
    links = [d for d in described[3:] if d[0] == "a"]
    assert len(links) == 3 and all("/project/" in href for _, href in links), described
    invisible = [f for f in order if f["outline"] == "none" or f["width"] < 2]
    assert invisible == [], invisible

    # Type a search and press Enter on the focused button: the keyboard alone searches.
    load(page, site.url)
    tab(page)
    assert tab(page)["id"] == "q"
    ActionChains(page).send_keys("long").perform()
    assert tab(page)["type"] == "submit"
    ActionChains(page).send_keys(Keys.ENTER).perform()
    wait(page).until(EC.url_contains("?q=long"))
    assert [a.text for a in page.find_elements(By.CSS_SELECTOR, "ul.projects li a")] == \
        ["long-readme"]


def test_tab_reaches_the_copy_button_on_a_project_page(site, page):
    load(page, site.url + "project/demo-pkg-00000/")
    for _ in range(10):
        focused = tab(page)
        if focused["tag"] == "button" and focused["type"] == "button":
            break
    else:
        pytest.fail("Tab never reached the Copy button")
    assert focused["text"] == "Copy" and focused["outline"] != "none" and focused["width"] >= 2


# -- 7. a private repository


def test_private_repository_prompts_for_credentials(tmp_path, page, daemon_factory):
    import bcrypt
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    root = tmp_path / "root"
    make_corpus(root, projects=2, versions=1, prefix="Secret")
    config = tmp_path / "ppypi.yaml"
    config.write_text("repositories:\n  main:\n    read: [alice]\n"
                      f'users:\n  alice: {{password: "{hashed}"}}\n')
    private = daemon_factory(root, "--config", str(config), "--extra-index-url", "")

    for path in ("", "project/secret-pkg-00000/", "?q=secret"):
        status, headers, body = get(private.url + path)
        assert status == 401, path
        assert headers["WWW-Authenticate"] == 'Basic realm="ppypi"', path
        assert b"secret-pkg" not in body

    # Without credentials (headless Chromium has no one to ask): no project names.
    load(page, private.url)
    assert "secret-pkg" not in page.page_source
    assert page.find_elements(By.CSS_SELECTOR, "ul.projects") == []

    # With them, the page, and the browser keeps them for the links it follows.
    parts = urllib.parse.urlsplit(private.url)
    load(page, f"http://alice:pw@{parts.netloc}/")
    names = [a.text for a in page.find_elements(By.CSS_SELECTOR, "ul.projects li a")]
    assert sorted(names) == ["secret-pkg-00000", "secret-pkg-00001"]
    page.find_element(By.LINK_TEXT, "secret-pkg-00001").click()
    wait(page).until(EC.url_to_be(private.url + "project/secret-pkg-00001/"))
    assert page.find_element(By.TAG_NAME, "h1").text == "secret-pkg-00001 1.0.0"


def test_home_shows_the_public_repository_and_signs_in_to_the_private_one(
        tmp_path, page, daemon_factory):
    """The first repository private, another public: / is not a 401 for all
    of it; it links to what the visitor may read, and its sign-in link asks
    for credentials and comes back to the projects."""
    import bcrypt
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    root = tmp_path / "root"
    make_corpus(root, projects=2, versions=1, prefix="Secret")
    make_corpus(root / "pub", projects=1, versions=1, prefix="Open")
    config = tmp_path / "ppypi.yaml"
    config.write_text("repositories:\n  main:\n    read: [alice]\n"
                      "  pub:\n    path: pub\n    read: anyone\n"
                      f'users:\n  alice: {{password: "{hashed}"}}\n')
    server = daemon_factory(root, "--config", str(config), "--extra-index-url", "")

    load(page, server.url)
    assert "secret-pkg" not in page.page_source
    assert "needs you to sign in" in page.find_element(By.TAG_NAME, "main").text
    page.find_element(By.LINK_TEXT, "pub").click()
    wait(page).until(EC.url_to_be(server.url + "pub/"))
    assert [a.text for a in page.find_elements(By.CSS_SELECTOR, "ul.projects li a")] == \
        ["open-pkg-00000"]

    # What the sign-in link does once the person has typed alice's password.
    load(page, server.url)
    login = page.find_element(By.LINK_TEXT, "Sign in").get_attribute("href")
    assert login == server.url + "?login"
    parts = urllib.parse.urlsplit(login)
    load(page, f"http://alice:pw@{parts.netloc}/?login")
    wait(page).until(EC.url_to_be(server.url))
    names = [a.text for a in page.find_elements(By.CSS_SELECTOR, "ul.projects li a")]
    assert sorted(names) == ["secret-pkg-00000", "secret-pkg-00001"]
    assert page.find_element(By.LINK_TEXT, "pub").get_attribute("href") == server.url + "pub/"
