"""
Pages for people: the project list with search, a project, a version.

Built with twisted.web.template's tags, so every value from a package's
metadata is escaped by construction; the long description is rendered and
sanitised by readme-renderer, as pypi.org does. No asset from outside the
server: the style and the one small script (the copy button) are inline,
and the Content-Security-Policy allows nothing else.
"""

import os
import shlex
from collections import namedtuple
from datetime import datetime, timezone

from twisted.web.template import Tag, flattenString, tags

from ..auth import TOKEN_USER
from ..config import ANYONE, AUTHENTICATED
from ..simple_pages import latest_version, sort_versions
from ..metadata import parse_metadata
from .style import CONTENT_SECURITY_POLICY, COPY_SCRIPT, STYLE  # noqa: F401 (used from here)

# The project list shows this many; the search finds the others.
LIST_LIMIT = 200
SEARCH_LIMIT = 100


def _date(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _size(n):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def _page(title, base, body, query=""):
    return tags.html(lang="en")(
        tags.head(
            tags.meta(charset="utf-8"),
            tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
            tags.title(title),
            tags.style(STYLE),
        ),
        tags.body(
            tags.header(
                tags.a(href=base, class_="brand")("ppypi"),
                tags.form(class_="search", action=base, method="get", role="search")(
                    tags.label(for_="q", class_="sr-only")("Search projects"),
                    tags.input(id="q", name="q", type="search", value=query,
                               placeholder="name or summary"),
                    tags.button(type="submit")("Search"),
                ),
            ),
            Tag("main")(body),  # HTML5, not in twisted.web.template's tag list
            tags.script(COPY_SCRIPT),
        ),
    )


async def render(tree, raw=None):
    """
    Flatten a page. C{raw}: {marker: sanitised HTML} to put in place of
    markers (the description, which readme-renderer has sanitised; a marker
    is random per page, so no escaped text can equal it).
    """
    body = await flattenString(None, tree)
    for marker, html in (raw or {}).items():
        body = body.replace(marker.encode(), html.encode("utf-8"), 1)
    return b"<!DOCTYPE html>\n" + body


class ProjectSummary:
    """What the list and the search show of a project."""

    __slots__ = ("name", "version", "summary", "updated", "haystack")

    def __init__(self, name, files, yanks):
        versions = {f.version for f in files}
        self.name = name
        self.version = latest_version(versions, yanks)
        latest = [f for f in files if f.version == self.version]
        self.summary = next((f.summary for f in latest if f.summary), None)
        self.updated = max(f.upload_time for f in files)
        self.haystack = f"{name}\n{self.summary or ''}".lower()


# How uploads authenticate, for the twine and uv publish lines: the username,
# the password as a shell word (None: the tool asks for it), and a note.
# Never the secret itself: the page only says where it is.
Upload = namedtuple("Upload", "username password note")

# Another repository of the server: its name, the link to it (its home page,
# or its sign-in link) and whether anyone may read it.
Neighbour = namedtuple("Neighbour", "name url public")


def setup_snippets(base, name, upload=None):
    simple = f"{base}simple/"
    snippets = [
        tags.h2("Set up pip, uv, poetry and twine"),
        tags.p("pip:"), tags.pre(f"pip install --index-url {simple} PACKAGE"),
        tags.p("or in ", tags.code("pip.conf"), ":"),
        tags.pre(f"[global]\nindex-url = {simple}"),
        tags.p("uv:"), tags.pre(f"uv pip install --index-url {simple} PACKAGE"),
        tags.p("or in ", tags.code("pyproject.toml"), ":"),
        tags.pre(f'[[tool.uv.index]]\nname = "{name}"\nurl = "{simple}"'),
        tags.p("poetry:"), tags.pre(f"poetry source add --priority=primary {name} {simple}"),
    ]
    if upload is None:
        return snippets + [tags.p(class_="muted")("This repository takes no uploads.")]
    credentials = f" -u {upload.username}" + (
        f" -p {upload.password}" if upload.password is not None else "")
    return snippets + [
        tags.p("twine:"),
        tags.pre(id="twine-line")(
            f"twine upload --repository-url {base}{credentials} dist/*"),
        tags.p("or uv:"),
        tags.pre(id="uv-publish-line")(f"uv publish --publish-url {base}{credentials}"),
        tags.p(class_="muted")(upload.note) if upload.note else [],
    ]


def upload_hint(config, token_path=None):
    """
    How uploads to the repository of L{RepositoryConfig} C{config}
    authenticate (an L{Upload}), or None when nobody may upload.
    C{token_path}: where the zero-configuration upload token is, if the
    server has one.
    """
    write = config.write
    if write == ANYONE:
        return Upload("anonymous", "anonymous",
                      "Anyone may upload: any username and password will do.")
    if isinstance(write, str) and write != AUTHENTICATED:
        # The store's own mode (github): the password is one of its tokens.
        return Upload(write, f'"${write.upper()}_TOKEN"',
                      f"The password is a {write} token that may push to the "
                      "repository's store.")
    if not write:
        return None
    if token_path is not None and TOKEN_USER in write:
        return Upload(TOKEN_USER, f'"$(cat {shlex.quote(token_path)})"',
                      "Run it on the server, as a user who may read the token file.")
    if config.write_secret is not None and write == (config.name,):
        return Upload(config.name, None, "The password is the repository's write secret "
                                         "(twine and uv ask for it).")
    return Upload("USERNAME", None, "twine and uv ask for the password.")


def _neighbours(neighbours):
    """The other repositories, in a line: a link to each, a sign-in link where
    the visitor needs credentials."""
    if not neighbours:
        return []
    items = []
    for n in neighbours:
        if items:
            items.append(", ")
        items.append(tags.a(href=n.url)(n.name))
        if not n.public:
            items.append(" (sign in)")
    return [tags.p(class_="muted")("Other repositories here: ", *items, ".")]


def home(repo_name, base, summaries, total_files, query=None, results=None, upload=None,
         neighbours=()):
    """The project list (most recently updated first), or search results."""
    shown = results if query else summaries[:LIST_LIMIT]
    items = [tags.li(
        tags.a(href=f"{base}project/{s.name}/")(tags.strong(s.name)), " ",
        tags.span(class_="muted")(s.version), tags.br(),
        s.summary or tags.span(class_="muted")("(no summary)"), tags.br(),
        tags.span(class_="muted")("updated ", tags.time(_date(s.updated))),
    ) for s in shown]
    if query:
        heading = tags.h1(f"{len(results)} result{'s' if len(results) != 1 else ''} for ",
                          tags.q(query))
        note = [tags.p(class_="muted")(f"Showing the first {SEARCH_LIMIT}.")] \
            if len(results) >= SEARCH_LIMIT else []
    else:
        heading = tags.h1(f"Repository {repo_name}")
        note = [tags.p(class_="muted")(
            f"{len(summaries)} projects, {total_files} files.",
            f" The {LIST_LIMIT} most recently updated are listed; search for the others."
            if len(summaries) > LIST_LIMIT else "")]
    body = [heading, *note, *([] if query else _neighbours(neighbours)),
            tags.ul(class_="projects")(*items)]
    if not query:
        body += setup_snippets(base, repo_name, upload)
    return _page(f"ppypi: {repo_name}", base, body, query or "")


def sign_in(repo_name, base, login_url, why, neighbours=()):
    """
    What a visitor who may not read the repository sees instead of its
    projects: why, a sign-in link (which asks the browser for credentials),
    and the other repositories.

    @param why: None (no credentials sent), "invalid" (they were refused), or
        the reason credentials that were accepted do not allow reading.
    """
    if why is None:
        say = [f"Repository {repo_name} needs you to sign in to see its projects. ",
               tags.a(href=login_url)("Sign in"), "."]
    elif why == "invalid":
        say = ["The username or password your browser sent was not accepted. ",
               tags.a(href=login_url)("Sign in again"), "."]
    else:
        say = [f"{why}. ", tags.a(href=login_url)("Sign in as someone else"), "."]
    public = [n for n in neighbours if n.public]
    private = [n for n in neighbours if not n.public]
    body = [tags.h1(f"Repository {repo_name}"), tags.p(*say)]
    if public:
        body += [tags.h2("Repositories anyone may read"), tags.ul(class_="projects")(
            *[tags.li(tags.a(href=n.url)(tags.strong(n.name))) for n in public])]
    if private:
        body += [tags.h2("Other repositories that need signing in"),
                 tags.ul(class_="projects")(
                     *[tags.li(tags.a(href=n.url)(tags.strong(n.name)), " (sign in)")
                       for n in private])]
    return _page(f"ppypi: {repo_name}", base, body)


def _metadata_list(msg):
    def get(field):
        value = msg.get(field) if msg is not None else None
        return str(value) if value is not None else None

    def get_all(field):
        return [str(v) for v in (msg.get_all(field) or [])] if msg is not None else []

    items = []
    license_ = get("License-Expression") or get("License")
    if license_:
        items += [tags.dt("License"), tags.dd(license_.splitlines()[0][:200])]
    if get("Requires-Python"):
        items += [tags.dt("Requires Python"), tags.dd(tags.code(get("Requires-Python")))]
    for author in ("Author", "Author-email", "Maintainer", "Maintainer-email"):
        if get(author):
            items += [tags.dt(author.replace("-email", " email")), tags.dd(get(author))]
    deps = get_all("Requires-Dist")
    if deps:
        items += [tags.dt("Dependencies"),
                  tags.dd(tags.ul(*[tags.li(tags.code(d)) for d in deps]))]
    urls = []
    for entry in get_all("Project-URL") + ([f"Homepage, {get('Home-page')}"]
                                           if get("Home-page") else []):
        label, _, url = entry.partition(",")
        url = url.strip()
        # Only web links: no javascript:, data: or other schemes.
        if url.lower().startswith(("https://", "http://")):
            urls.append(tags.li(tags.a(href=url, rel="nofollow noopener")(label.strip() or url)))
        elif url:
            urls.append(tags.li(label.strip(), ": ", tags.code(url)))
    if urls:
        items += [tags.dt("Links"), tags.dd(tags.ul(*urls))]
    classifiers = get_all("Classifier")
    if classifiers:
        items += [tags.dt("Classifiers"),
                  tags.dd(tags.ul(*[tags.li(c) for c in classifiers[:100]]))]
    return tags.dl(class_="meta")(*items) if items else []


def description_html(msg):
    """The long description, rendered and sanitised as Warehouse does; None if none."""
    import readme_renderer.markdown
    import readme_renderer.rst
    import readme_renderer.txt

    if msg is None:
        return None
    text = msg.get_payload() if isinstance(msg.get_payload(), str) else None
    if not (text and text.strip()):
        text = str(msg.get("Description") or "")
    if not text.strip():
        return None
    ctype = str(msg.get("Description-Content-Type") or "text/x-rst").lower()
    try:
        if ctype.startswith("text/markdown"):
            html = readme_renderer.markdown.render(text)
        elif ctype.startswith("text/plain"):
            html = readme_renderer.txt.render(text)
        else:
            html = readme_renderer.rst.render(text)
    except Exception:
        html = None
    return html if html is not None else readme_renderer.txt.render(text)


_STATUS_NOTES = {
    "archived": "It is not expected to change: it takes no new uploads.",
    "deprecated": "It is considered obsolete, and may have been replaced by another project.",
    "quarantined": "It is considered unsafe: its files are not offered for download, "
                   "and it takes no new uploads.",
    "active": "",
}


def _status_note(name, status):
    """PEP 792's status of a project, for people (nothing for a plain active one)."""
    if status is None:
        return []
    reason = status.get("reason")
    return [tags.p(class_=f"status {status['status']}")(
        f"This project is {status['status']}", f": {reason}" if reason else "", ". ",
        _STATUS_NOTES.get(status["status"], ""))]


def project(repo_name, base, name, files, yanks, version, raw_metadata, pinned,
            status=None, publishers=None):
    """
    A project page (C{pinned}: the page of one version; C{status}: its PEP
    792 status or None; C{publishers}: {filename: [who published it, from
    its provenance]}).

    @return: (tree, raw) for L{render}.
    """
    msg = parse_metadata(raw_metadata) if raw_metadata else None
    summary = str(msg.get("Summary")) if msg is not None and msg.get("Summary") else None
    versions = {}
    for f in files:
        versions.setdefault(f.version, []).append(f)
    version_rows = []
    for v in reversed(sort_versions(versions)):
        uploaded = max(f.upload_time for f in versions[v])
        state = []
        if v in yanks:
            state = [tags.span(class_="yanked")("yanked"),
                     (": " + yanks[v]) if yanks[v] else ""]
        version_rows.append(tags.tr(
            tags.td(tags.a(href=f"{base}project/{name}/{v}/")(v),
                    " (this page)" if pinned and v == version else ""),
            tags.td(tags.time(_date(uploaded))),
            tags.td(*state)))
    quarantined = status is not None and status["status"] == "quarantined"
    publishers = {} if quarantined else (publishers or {})
    file_rows = [tags.tr(
        tags.td(class_="file")(f.filename if quarantined
                               else tags.a(href=f"{base}{f.url_path}")(f.filename)),
        tags.td(class_="kind")(f.kind.replace("bdist_wheel", "wheel")),
        tags.td(class_="size")(_size(f.size)),
        tags.td(class_="hash")(f.sha256),
        # A column only when a file of the version has a provenance.
        tags.td(class_="provenance")(
            [tags.a(href=f"{base}integrity/{name}/{f.version}/{f.filename}/provenance")(
                "published by ", "; ".join(publishers[f.filename]))]
            if publishers.get(f.filename) else []) if publishers else [],
    ) for f in sorted(versions[version], key=lambda f: f.filename)]
    pin = f"=={version}" if pinned or version in yanks else ""
    install = f"pip install --index-url {base}simple/ {name}{pin}"
    yanked_note = []
    if version in yanks:
        yanked_note = [tags.p(class_="yanked")(
            "This release is yanked", (": " + yanks[version]) if yanks[version] else "",
            ". Installers skip it unless it is pinned with ==.")]
    described = description_html(msg)
    marker = "ppypi-description-" + os.urandom(16).hex()
    body = [
        tags.h1(name, " ", tags.span(class_="muted")(version)),
        tags.p(summary) if summary else [],
        *_status_note(name, status),
        *yanked_note,
        tags.div(class_="install")(
            tags.pre(id="install-line")(install),
            tags.button(type="button", **{"data-copy": "install-line",
                                          "aria-label": "Copy the install command"})("Copy"),
        ),
        _metadata_list(msg),
        tags.h2("Files of ", version),
        tags.div(class_="table")(tags.table(class_="files")(
            tags.thead(tags.tr(tags.th("File"), tags.th("Type"), tags.th("Size"),
                               tags.th("sha256"),
                               tags.th("Provenance") if publishers else [])),
            tags.tbody(*file_rows))),
        tags.h2("Versions"),
        tags.div(class_="table")(tags.table(
            tags.thead(tags.tr(tags.th("Version"), tags.th("Uploaded"), tags.th("State"))),
            tags.tbody(*version_rows))),
        tags.h2("Description"),
        tags.div(class_="description")(marker) if described
        else tags.p(class_="muted")("No description."),
    ]
    title = f"{name} {version}" if pinned else name
    return _page(f"{title} · ppypi: {repo_name}", base, body), (
        {marker: described} if described else {})
