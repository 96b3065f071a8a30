"""
The in-memory model of one repository's projects and files, and its pages.

Pages are rendered once per change and kept as bytes (and gzipped bytes,
made on first demand) with their strong ETag, so serving a page costs a
dictionary lookup whatever the index size. Project pages are kept within a
byte budget, least recently used out first: at 100,000 files, every
project's page in all three content types is ~150 MB.
"""

import gzip
import hashlib
import time
from collections import OrderedDict
from email.utils import formatdate

from .simple_pages import RENDERERS, HTML


class PageCache:
    """
    Rendered project pages within a byte budget, the least recently used
    dropped first. A page costs its body, half again for the gzipped copy
    it may make, and its object (an estimate, not a measurement).
    """

    def __init__(self, budget):
        self.budget = budget
        self.bytes = 0
        self._pages = OrderedDict()

    @staticmethod
    def cost(page):
        return len(page.body) * 3 // 2 + 400

    def __len__(self):
        return len(self._pages)

    def get(self, key):
        page = self._pages.get(key)
        if page is not None:
            self._pages.move_to_end(key)
        return page

    def put(self, key, page):
        self.pop(key)
        self._pages[key] = page
        self.bytes += self.cost(page)
        while self.bytes > self.budget and len(self._pages) > 1:
            _, dropped = self._pages.popitem(last=False)
            self.bytes -= self.cost(dropped)

    def pop(self, key):
        page = self._pages.pop(key, None)
        if page is not None:
            self.bytes -= self.cost(page)

    def clear(self):
        self._pages.clear()
        self.bytes = 0


# Project pages kept rendered (PageCache). A page of a project with three
# files is ~1.5 kB; 24 MB holds ~11,000 of them, and rendering one anew
# costs about as much as answering it.
PAGE_CACHE_BYTES = 24_000_000


class Page:
    """
    A rendered page: its bytes, its strong ETag, and gzip on demand. The
    header values (ETag, Last-Modified, Content-Type) are kept as bytes,
    ready for every answer.
    """

    __slots__ = ("body", "etag", "content_type", "content_type_header", "last_modified",
                 "last_modified_header", "_gz")

    def __init__(self, body, content_type, last_modified):
        self.body = body
        self.content_type = content_type
        self.content_type_header = (content_type if content_type.endswith("+json")
                                    else content_type + "; charset=utf-8").encode("ascii")
        self.last_modified = last_modified
        self.last_modified_header = formatdate(last_modified, usegmt=True).encode("ascii")
        digest = hashlib.sha256(content_type.encode() + b"\0" + body).hexdigest()[:32]
        self.etag = b'"%s"' % digest.encode("ascii")
        self._gz = None

    @property
    def gzipped(self):
        """(body, etag) of the gzip-encoded representation."""
        if self._gz is None:
            self._gz = (gzip.compress(self.body, compresslevel=6, mtime=0),
                        self.etag[:-1] + b'-gz"')
        return self._gz


class RepositoryIndex:
    """
    Projects and files of one repository.

    @ivar held: every normalised project name this repository has ever held
        (it is never redirected to an extra index).
    @ivar yanks: {project: {version: reason}} (PEP 592; "" for no reason).
    @ivar statuses: {project: {"status": ..., "reason": ...}} (PEP 792), of
        the projects whose status is not a plain "active".
    @ivar ready: True once the first listing of the backend has been applied.
    """

    def __init__(self, name, clock=time.time, page_cache_bytes=PAGE_CACHE_BYTES):
        self.name = name
        self._files = {}        # filename -> DistFile
        # normalised name -> [DistFile]: a list, not a dict, per project
        # (33,000 small dicts cost ~8 MB at 100,000 files).
        self._projects = {}
        self._pages = PageCache(page_cache_bytes)  # (name, content type, lean) -> Page
        self._roots = {}        # content type -> Page
        self._changed_at = {}   # normalised name -> time of its last change
        self._root_changed_at = clock()
        self._clock = clock
        self.held = set()
        self.yanks = {}
        self.statuses = {}
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
        return self._projects.get(name, ())

    def has_held(self, name):
        return name in self._projects or name in self.held

    def changed_at(self, name):
        return self._changed_at.get(name, self._root_changed_at)

    def root_page(self, content_type=HTML):
        page = self._roots.get(content_type)
        if page is None:
            body = RENDERERS[content_type][0](self._projects)
            page = self._roots[content_type] = Page(body, content_type, self._root_changed_at)
        return page

    def project_page(self, name, content_type=HTML, lean=False):
        """The rendered page of a normalised project name, or None (C{lean}:
        for pip, see L{LEAN_BELOW})."""
        key = (name, content_type, lean)
        page = self._pages.get(key)
        if page is None:
            files = self._projects.get(name)
            if not files:
                return None
            body = RENDERERS[content_type][1](name, files, self.yanks.get(name, {}),
                                               self.statuses.get(name), lean)
            page = Page(body, content_type, self._changed_at[name])
            self._pages.put(key, page)
        return page

    # -- changing

    def _changed(self, project):
        for content_type in RENDERERS:
            self._pages.pop((project, content_type, False))
            self._pages.pop((project, content_type, True))
        self._changed_at[project] = self._clock()
        self.generation += 1

    def _root_changed(self):
        self._roots.clear()
        self._root_changed_at = self._clock()

    def add(self, f):
        """Add or replace one file."""
        old = self._files.get(f.filename)
        if old is not None and old.project != f.project:  # pragma: no cover
            self.remove(f.filename)
        self._files[f.filename] = f
        files = self._projects.get(f.project)
        if files is None:
            files = self._projects[f.project] = []
            self._root_changed()
        if old is not None and old.project == f.project:
            files[files.index(old)] = f
        else:
            files.append(f)
        self.held.add(f.project)
        self._changed(f.project)

    def remove(self, filename):
        f = self._files.pop(filename, None)
        if f is None:
            return None
        files = self._projects[f.project]
        files.remove(f)
        if not files:
            del self._projects[f.project]
            self._root_changed()
        self._changed(f.project)
        return f

    def replace(self, files):
        """
        Make the index hold exactly C{files}, touching only what changed.

        @return: (added, removed) counts.
        """
        new = {f.filename: f for f in files}
        if not self._files:
            return self._fill(new)
        removed = [name for name in self._files if name not in new]
        for name in removed:
            self.remove(name)
        added = 0
        for name, f in new.items():
            old = self._files.get(name)
            if old is not f and old != f:
                self.add(f)
                added += 1
        self.ready = True
        return added, len(removed)

    def _fill(self, new):
        """replace() into an empty index, without per-file bookkeeping."""
        now = self._clock()
        for name, f in new.items():
            self._projects.setdefault(f.project, []).append(f)
        self._files = new
        for project in self._projects:
            self._changed_at[project] = now
        self.held.update(self._projects)
        self._pages.clear()
        self._root_changed()
        self.generation += 1
        self.ready = True
        return len(new), 0

    def replace_project(self, project, files, yanks):
        """Make one project hold exactly C{files} and C{yanks} (a mirror's page)."""
        new = {f.filename: f for f in files}
        for f in list(self._projects.get(project, ())):
            if f.filename not in new:
                self.remove(f.filename)
        for f in new.values():
            old = self._files.get(f.filename)
            if old is not f and old != f:
                self.add(f)
        if (yanks or None) != self.yanks.get(project):
            self._changed(project)
            if yanks:
                self.yanks[project] = dict(yanks)
            else:
                self.yanks.pop(project, None)

    def forget_project(self, project):
        """Drop a project (a mirror's page, dropped); it is held no more."""
        for f in list(self._projects.get(project, ())):
            self.remove(f.filename)
        self.yanks.pop(project, None)
        self.held.discard(project)

    def status(self, name):
        """A project's status: {"status": ..., "reason": ...} or None (active)."""
        return self.statuses.get(name)

    def set_statuses(self, statuses):
        """Replace every project status: {project: {"status", "reason"}}."""
        for project in set(statuses) | set(self.statuses):
            if statuses.get(project) != self.statuses.get(project):
                self._changed(project)
        self.statuses = {p: dict(s) for p, s in statuses.items() if s}

    def set_yanks(self, yanks):
        """Replace every yank: {project: {version: reason}}."""
        for project in set(yanks) | set(self.yanks):
            if yanks.get(project) != self.yanks.get(project):
                self._changed(project)
        self.yanks = {p: dict(v) for p, v in yanks.items() if v}
