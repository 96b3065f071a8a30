"""
Pages for people, in process: a corpus whose metadata is hostile in every
field shown, and the pages show it inert; versions, yanks, search, and
permissions.
"""

import io
import zipfile
from html.parser import HTMLParser

import pytest
import pytest_twisted

from ppypi.web.pages import COPY_SCRIPT, CONTENT_SECURITY_POLICY

from .helpers import InProcess, basic, wheel_bytes

XSS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "javascript:alert(3)",
    "<svg/onload=alert(4)>",
    "' onmouseover='alert(5)",
]


def hostile_wheel(dist, version, description_type="text/markdown"):
    payload = " ".join(XSS)
    meta = (
        "Metadata-Version: 2.1\n"
        f"Name: {dist}\nVersion: {version}\n"
        f"Summary: {payload}\n"
        f"License: {payload}\n"
        f"Author: {payload}\n"
        f"Author-email: {payload}\n"
        f"Requires-Python: >=3.8,{payload}\n"
        f"Requires-Dist: evil ; extra == '{XSS[0]}'\n"
        f"Project-URL: Home{XSS[1]}, javascript:alert(6)\n"
        "Project-URL: Docs, https://docs.example/<script>alert(7)</script>\n"
        f"Classifier: {payload}\n"
        f"Keywords: {payload}\n"
        f"Description-Content-Type: {description_type}\n\n"
        "# Title\n\n<script>alert(8)</script>\n\n[click](javascript:alert(9))\n\n"
        "<img src=x onerror=alert(10)>\n\n<a href=\"javascript:alert(11)\">x</a>\n"
    ).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{dist}-{version}.dist-info/METADATA", meta)
        z.writestr(f"{dist}/__init__.py", b"")
    return buf.getvalue()


class Inspector(HTMLParser):
    """Collects what could run in a browser."""

    def __init__(self):
        super().__init__()
        self.scripts = []
        self.handlers = []
        self.bad_links = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name.lower().startswith("on"):
                self.handlers.append((tag, name, value))
            if name.lower() in ("href", "src", "action", "formaction") and value and \
                    value.strip().lower().startswith(("javascript:", "data:text", "vbscript:")):
                self.bad_links.append((tag, name, value))
        if tag in ("script", "iframe", "object", "embed"):
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag in ("script", "iframe", "object", "embed"):
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def inert(body):
    p = Inspector()
    p.feed(body.decode())
    assert p.handlers == [], p.handlers
    assert p.bad_links == [], p.bad_links
    assert p.scripts == [COPY_SCRIPT], p.scripts  # ours, and nothing else
    return p


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "evil_tool-1.0-py3-none-any.whl").write_bytes(hostile_wheel("evil_tool", "1.0"))
    (root / "evil_tool-2.0-py3-none-any.whl").write_bytes(
        hostile_wheel("evil_tool", "2.0", "text/x-rst"))
    (root / "plain_tool-0.1-py3-none-any.whl").write_bytes(
        hostile_wheel("plain_tool", "0.1", "text/plain"))
    (root / "good_tool-3.0-py3-none-any.whl").write_bytes(wheel_bytes("good_tool", "3.0"))
    return InProcess(root, extra_index_url=None)


@pytest.mark.parametrize("path", ["/", "/?q=evil", "/?q=<script>alert(1)</script>",
                                  "/project/evil-tool/", "/project/evil-tool/1.0/",
                                  "/project/evil-tool/2.0/", "/project/plain-tool/"])
@pytest_twisted.ensureDeferred
async def test_hostile_metadata_is_inert_on_every_page(server, path):
    await server.sync()
    r, body = await server.get(path)
    assert r.code == 200
    assert r.headers.getRawHeaders("Content-Security-Policy") == [CONTENT_SECURITY_POLICY]
    assert r.headers.getRawHeaders("X-Content-Type-Options") == ["nosniff"]
    inert(body)
    assert b"<script>alert" not in body and b"<img src=x" not in body
    if "project/evil" in path:
        # The text is there, escaped, not dropped.
        assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in body


@pytest_twisted.ensureDeferred
async def test_project_page_content(server):
    await server.sync()
    r, body = await server.get("/project/good-tool/")
    text = body.decode()
    assert "<h1>good-tool <span class=\"muted\">3.0</span></h1>" in text
    assert "bench package good_tool" in text
    assert 'id="install-line">pip install --index-url http://ppypi.test/simple/ good-tool<' in text
    assert "Long description of good_tool." in text
    assert "good_tool-3.0-py3-none-any.whl" in text and "&gt;=3.8" in text
    assert 'href="http://ppypi.test/packages/good-tool/good_tool-3.0-py3-none-any.whl"' in text
    r, body = await server.get("/project/Good.Tool/")
    assert r.code == 301
    assert r.headers.getRawHeaders("Location") == ["http://ppypi.test/project/good-tool/"]
    for missing in ("/project/nope/", "/project/good-tool/9.9/", "/project/good-tool/x!y/"):
        r, _ = await server.get(missing)
        assert r.code == 404, missing


@pytest_twisted.ensureDeferred
async def test_versions_yanks_and_pinned_install_line(server):
    await server.sync()
    await server.repository.yank("evil-tool", "2.0", "broken <b>bad</b>")
    r, body = await server.get("/project/evil-tool/")
    text = body.decode()
    # The latest that is not yanked is shown first; the yank and its reason are listed.
    assert '<h1>evil-tool <span class="muted">1.0</span></h1>' in text
    assert "yanked" in text and "broken &lt;b&gt;bad&lt;/b&gt;" in text
    r, body = await server.get("/project/evil-tool/2.0/")
    text = body.decode()
    assert "This release is yanked" in text
    assert "evil-tool==2.0<" in text  # pinned: the only way to install a yanked release


@pytest_twisted.ensureDeferred
async def test_search_by_name_and_summary(server):
    await server.sync()
    r, body = await server.get("/?q=GOOD")
    assert b"1 result for" in body and b"/project/good-tool/" in body
    r, body = await server.get("/?q=bench+package")  # in good-tool's summary
    assert b"/project/good-tool/" in body and b"/project/evil-tool/" not in body
    r, body = await server.get("/?q=zzzz-nothing")
    assert b"0 results for" in body


@pytest_twisted.ensureDeferred
async def test_pages_are_rendered_once_per_change(server, monkeypatch):
    import ppypi.web.pages as pages
    await server.sync()
    calls = []
    real = pages.project
    monkeypatch.setattr(pages, "project", lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(3):
        r, body = await server.get("/project/good-tool/")
    assert len(calls) == 1
    etag = r.headers.getRawHeaders("ETag")[0]
    r, body = await server.get("/project/good-tool/", {"If-None-Match": etag})
    assert (r.code, body) == (304, b"")
    await server.repository.yank("good-tool", "3.0", "")
    r, _ = await server.get("/project/good-tool/")
    assert len(calls) == 2


@pytest_twisted.ensureDeferred
async def test_private_repository_prompts_for_credentials(tmp_path):
    import bcrypt
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    root = tmp_path / "root"
    root.mkdir()
    (root / "good_tool-3.0-py3-none-any.whl").write_bytes(wheel_bytes("good_tool", "3.0"))
    server = InProcess(root, config_text=(
        f'repositories:\n  main:\n    read: [alice]\nusers:\n  alice: {{password: "{hashed}"}}\n'))
    await server.sync()
    for path in ("/", "/project/good-tool/", "/project/good-tool/3.0/", "/?q=good"):
        r, _ = await server.get(path)
        assert r.code == 401, path
        assert r.headers.getRawHeaders("WWW-Authenticate") == ['Basic realm="ppypi"']
        r, body = await server.get(path, {"Authorization": basic("alice", "pw")})
        assert r.code == 200 and b"good-tool" in body, path
        cache = r.headers.getRawHeaders("Cache-Control")[0]
        assert cache.startswith("private") or cache == "no-store", (path, cache)


@pytest_twisted.ensureDeferred
async def test_pages_kept_stay_within_their_budget(server):
    """With room for one page only, walking every page twice keeps one page
    and answers every page whole and current."""
    await server.sync()
    cache = server.site.resource._apps["default"]._app.people._people_cache
    paths = ("/project/evil-tool/", "/project/good-tool/", "/project/plain-tool/", "/")
    first = {}
    for path in paths:
        r, first[path] = await server.get(path)
        assert r.code == 200
    assert len(cache) == len(paths)
    cache.clear()
    cache.budget = 1
    for _ in range(2):
        for path in paths:
            r, body = await server.get(path)
            assert (r.code, body) == (200, first[path])
            assert len(cache) == 1


# -- the home page shows what the visitor may read


MIXED_CONFIG = """\
repositories:
  main: {{read: [alice], write: [alice]}}
  pub: {{path: pub, read: anyone}}
  team: {{path: team, read: [alice]}}
users:
  alice: {{password: "{alice}"}}
  bob: {{password: "{bob}"}}
"""


@pytest.fixture
def mixed(tmp_path):
    """The first repository private, another public, a third private."""
    import bcrypt
    root = tmp_path / "root"
    for folder, dist in (("", "good_tool"), ("pub", "pub_tool"), ("team", "team_tool")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / f"{dist}-1.0-py3-none-any.whl").write_bytes(wheel_bytes(dist, "1.0"))
    hashes = {user: bcrypt.hashpw(f"{user}-pw".encode(), bcrypt.gensalt(4)).decode()
              for user in ("alice", "bob")}
    return InProcess(root, config_text=MIXED_CONFIG.format(**hashes), extra_index_url=None)


def one(response, name):
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None


@pytest_twisted.ensureDeferred
async def test_home_shows_what_the_visitor_may_read(mixed):
    await mixed.sync()
    alice, bob = basic("alice", "alice-pw"), basic("bob", "bob-pw")

    # Anonymous, with another repository public: a page, not a 401 for all of it.
    for path in ("/", "/?q=good"):
        r, body = await mixed.get(path)
        assert r.code == 200, path
        assert one(r, "Content-Type") == "text/html; charset=utf-8"
        assert one(r, "Cache-Control") == "no-store"
        assert one(r, "WWW-Authenticate") is None
        text = body.decode()
        assert "needs you to sign in" in text
        assert 'href="http://ppypi.test/?login">Sign in<' in text
        assert 'href="http://ppypi.test/pub/"' in text  # readable: its home page
        assert 'href="http://ppypi.test/team/?login"' in text  # not: its sign-in link
        assert "good-tool" not in text and "good_tool" not in text
        inert(body)

    # The sign-in link makes the browser ask, then goes home.
    r, body = await mixed.get("/?login")
    assert (r.code, one(r, "WWW-Authenticate")) == (401, 'Basic realm="ppypi"')
    assert one(r, "Content-Type") == "text/html; charset=utf-8" and b"good-tool" not in body
    r, _ = await mixed.get("/?login", {"Authorization": alice})
    assert (r.code, one(r, "Location")) == (303, "http://ppypi.test/")

    # A reader sees the projects, and a page no cache gives anyone else.
    r, body = await mixed.get("/", {"Authorization": alice})
    assert r.code == 200 and b"/project/good-tool/" in body
    assert one(r, "Cache-Control").startswith("private")
    assert "Authorization" in one(r, "Vary")
    assert b'href="http://ppypi.test/pub/"' in body

    # Refused credentials: the browser asks again; the page says why.
    r, body = await mixed.get("/", {"Authorization": basic("alice", "wrong")})
    assert (r.code, one(r, "WWW-Authenticate")) == (401, 'Basic realm="ppypi"')
    assert b"not accepted" in body and b"good-tool" not in body
    assert one(r, "Content-Type") == "text/html; charset=utf-8"
    # Right credentials without the permission: 403, and where else to go.
    r, body = await mixed.get("/", {"Authorization": bob})
    assert r.code == 403 and b"bob may not read repository main" in body
    assert b'href="http://ppypi.test/pub/"' in body and b"good-tool" not in body
    r, _ = await mixed.get("/?login", {"Authorization": bob})
    assert r.code == 401  # so that the browser lets them sign in as someone else

    # The public repository's own home page, for anyone; it links to the others.
    r, body = await mixed.get("/pub/")
    assert r.code == 200 and b"/pub/project/pub-tool/" in body
    assert one(r, "Cache-Control").startswith("public")
    assert b'href="http://ppypi.test/main/?login"' in body
    assert b'href="http://ppypi.test/team/?login"' in body
    r, body = await mixed.get("/team/")
    assert r.code == 200 and b"team-tool" not in body and b"needs you to sign in" in body
    r, body = await mixed.get("/team/", {"Authorization": alice})
    assert r.code == 200 and b"/team/project/team-tool/" in body

    # A project page asks at once, in HTML, and tells nothing of the project.
    r, body = await mixed.get("/project/good-tool/")
    assert (r.code, one(r, "WWW-Authenticate")) == (401, 'Basic realm="ppypi"')
    assert one(r, "Content-Type") == "text/html; charset=utf-8" and b"good-tool" not in body


@pytest_twisted.ensureDeferred
async def test_home_keeps_each_visitors_page_apart(mixed):
    """The rendered pages kept by the server are keyed by what the visitor may
    see: whatever the order of visits, nobody gets another's page."""
    await mixed.sync()
    alice = {"Authorization": basic("alice", "alice-pw")}
    seen = []
    for headers in (None, alice, None, alice, {"Authorization": basic("bob", "bob-pw")}, None):
        r, body = await mixed.get("/", headers)
        seen.append((r.code, b"/project/good-tool/" in body))
        if headers is alice:
            etag = one(r, "ETag")
    assert seen == [(200, False), (200, True), (200, False), (200, True), (403, False),
                    (200, False)]
    # The reader's validator gets an anonymous visitor nothing either.
    r, body = await mixed.get("/", {"If-None-Match": etag})
    assert r.code == 200 and b"good-tool" not in body
    r, body = await mixed.get("/", {"If-None-Match": etag, **alice})
    assert (r.code, body) == (304, b"")


@pytest_twisted.ensureDeferred
async def test_home_checks_credentials_once_and_never_for_anonymous(mixed, monkeypatch):
    import ppypi.auth
    await mixed.sync()
    hashed, checked = [], []
    real_bcrypt = ppypi.auth._bcrypt_checkpw
    monkeypatch.setattr(ppypi.auth, "_bcrypt_checkpw",
                        lambda *a: hashed.append(1) or real_bcrypt(*a))
    authenticator = mixed.site.resource._apps["main"]._app.ctx.authenticator
    real_authenticate = authenticator.authenticate

    async def authenticate(*a):
        checked.append(1)
        return await real_authenticate(*a)
    monkeypatch.setattr(authenticator, "authenticate", authenticate)

    async def costs(path, headers=None):
        del hashed[:], checked[:]
        await mixed.get(path, headers)
        return len(checked), len(hashed)

    for path in ("/", "/?q=tool", "/?login", "/pub/", "/team/", "/project/good-tool/"):
        assert await costs(path) == (0, 0), path
    alice = {"Authorization": basic("alice", "alice-pw")}
    assert await costs("/", alice) == (1, 1)  # checked, then cached
    assert await costs("/", alice) == (1, 0)
    assert await costs("/team/", alice) == (1, 0)
    assert await costs("/pub/", alice) == (0, 0)  # anyone reads it: nothing to check
    assert await costs("/", {"Authorization": basic("alice", "wrong")}) == (1, 1)


# -- the upload lines


def pre(body, id_):
    import html
    import re
    m = re.search(f'<pre id="{id_}">(.*?)</pre>'.encode(), body)
    return html.unescape(m.group(1).decode()) if m else None


@pytest_twisted.ensureDeferred
async def test_home_says_how_to_upload_with_the_token_and_never_shows_it(server):
    await server.sync()
    r, body = await server.get("/")
    path = f"{server.root}/.ppypi/upload-token"
    assert pre(body, "twine-line") == (
        f'twine upload --repository-url http://ppypi.test/ -u __token__ -p "$(cat {path})" dist/*')
    assert pre(body, "uv-publish-line") == (
        f'uv publish --publish-url http://ppypi.test/ -u __token__ -p "$(cat {path})"')
    assert server.token().encode() not in body


@pytest.mark.parametrize("write, username", [
    ("[alice]", "USERNAME"), ("authenticated", "USERNAME"),
    ("anyone", "anonymous"), ("[]", None)])
@pytest_twisted.ensureDeferred
async def test_home_says_how_to_upload_with_configured_users(tmp_path, write, username):
    import bcrypt
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    root = tmp_path / "root"
    root.mkdir()
    (root / "good_tool-3.0-py3-none-any.whl").write_bytes(wheel_bytes("good_tool", "3.0"))
    server = InProcess(root, config_text=(
        f"repositories:\n  main:\n    write: {write}\n"
        f'users:\n  alice: {{password: "{hashed}"}}\n'), extra_index_url=None)
    await server.sync()
    r, body = await server.get("/")
    assert r.code == 200
    line = pre(body, "twine-line")
    if username is None:
        assert line is None and b"takes no uploads" in body
    else:
        assert line.startswith(f"twine upload --repository-url http://ppypi.test/ -u {username}")
        assert pre(body, "uv-publish-line").startswith(
            f"uv publish --publish-url http://ppypi.test/ -u {username}")
    assert b"upload-token" not in body and b"__token__" not in body
