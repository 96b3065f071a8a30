"""
The in-memory model of one repository's projects and files, and its pages.

Pages are rendered once per change and kept as bytes with their strong
ETag, so serving a page costs a dictionary lookup whatever the index size.
"""

import hashlib
from html import escape
from urllib.parse import quote

from packaging.version import InvalidVersion, Version

API_VERSION = "1.0"


class DistFile:
    """One distribution file as the index knows it."""

    __slots__ = ("filename", "project", "version", "kind", "sha256", "size",
                 "mtime", "requires_python", "location")

    def __init__(self, filename, project, version, kind, sha256, size, mtime,
                 requires_python=None, location=None):
        self.filename = filename
        self.project = project
        self.version = version
        self.kind = kind
        self.sha256 = sha256
        self.size = size
        self.mtime = mtime
        self.requires_python = requires_python
        # Where the backend keeps it (a path relative to the folder, an asset id...)
        self.location = location

    def _key(self):
        return tuple(getattr(self, s) for s in self.__slots__)

    def __eq__(self, other):
        return isinstance(other, DistFile) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"DistFile({self.filename!r}, sha256={self.sha256[:12]}...)"

    @property
    def url_path(self):
        """The file's path under the repository, as used in links."""
        return f"packages/{self.project}/{quote(self.filename)}"


class Page:
    """A rendered page: its bytes and a strong ETag over them."""

    __slots__ = ("body", "etag", "content_type")

    def __init__(self, body, content_type):
        self.body = body
        self.content_type = content_type
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _version_key(f):
    try:
        return (0, Version(f.version), f.filename)
    except InvalidVersion:  # pragma: no cover - parse_filename already checked
        return (1, f.version, f.filename)


_HEAD = (
    '<!DOCTYPE html>\n<html>\n<head>\n'
    f'<meta name="pypi:repository-version" content="{API_VERSION}">\n'
    '<title>{title}</title>\n</head>\n<body>\n'
)


def render_root(projects):
    out = [_HEAD.format(title="Simple index")]
    for name in sorted(projects):
        out.append(f'<a href="{escape(name)}/">{escape(name)}</a><br>\n')
    out.append("</body>\n</html>\n")
    return "".join(out).encode("utf-8")


def render_project(name, files):
    title = f"Links for {escape(name)}"
    out = [_HEAD.format(title=title), f"<h1>{title}</h1>\n"]
    for f in sorted(files, key=_version_key):
        attrs = ""
        if f.requires_python:
            attrs = f' data-requires-python="{escape(f.requires_python, quote=True)}"'
        href = f"../../{f.url_path}#sha256={f.sha256}"
        out.append(f'<a href="{escape(href, quote=True)}"{attrs}>{escape(f.filename)}</a><br>\n')
    out.append("</body>\n</html>\n")
    return "".join(out).encode("utf-8")


class RepositoryIndex:
    """
    Projects and files of one repository.

    @ivar held: every normalised project name this repository has ever held
        (it is never redirected to an extra index).
    @ivar ready: True once the first listing of the backend has been applied.
    """

    HTML = "text/html; charset=utf-8"

    def __init__(self, name):
        self.name = name
        self._files = {}        # filename -> DistFile
        self._projects = {}     # normalised name -> {filename: DistFile}
        self._pages = {}        # normalised name -> Page
        self._root = None
        self.held = set()
        self.ready = False
        self.generation = 0

    # -- reading

    def __len__(self):
        return len(self._files)

    @property
    def projects(self):
        return self._projects.keys()

    def file(self, filename):
        return self._files.get(filename)

    def files(self):
        return self._files.values()

    def project_files(self, name):
        return self._projects.get(name, {}).values()

    def has_held(self, name):
        return name in self._projects or name in self.held

    def root_page(self):
        if self._root is None:
            self._root = Page(render_root(self._projects), self.HTML)
        return self._root

    def project_page(self, name):
        """The rendered page of a normalised project name, or None."""
        page = self._pages.get(name)
        if page is None:
            files = self._projects.get(name)
            if not files:
                return None
            page = self._pages[name] = Page(render_project(name, files.values()), self.HTML)
        return page

    # -- changing

    def _changed(self, project):
        self._pages.pop(project, None)
        self.generation += 1

    def add(self, f):
        """Add or replace one file."""
        old = self._files.get(f.filename)
        if old is not None and old.project != f.project:  # pragma: no cover
            self.remove(f.filename)
        self._files[f.filename] = f
        files = self._projects.get(f.project)
        if files is None:
            files = self._projects[f.project] = {}
            self._root = None
        files[f.filename] = f
        self.held.add(f.project)
        self._changed(f.project)

    def remove(self, filename):
        f = self._files.pop(filename, None)
        if f is None:
            return None
        files = self._projects[f.project]
        del files[filename]
        if not files:
            del self._projects[f.project]
            self._root = None
        self._changed(f.project)
        return f

    def replace(self, files):
        """
        Make the index hold exactly C{files}, touching only what changed.

        @return: (added, removed) counts.
        """
        new = {f.filename: f for f in files}
        removed = [name for name in self._files if name not in new]
        for name in removed:
            self.remove(name)
        added = 0
        for name, f in new.items():
            if self._files.get(name) != f:
                self.add(f)
                added += 1
        self.ready = True
        return added, len(removed)

