"""
Pages for people: the home page (the projects, a search, how to point
pip, uv, poetry and twine here) and a page per project and per version.
A visitor who may not read the repository gets a page that says so, with a
sign-in link and the server's other repositories.
"""

import hashlib
import json
from collections import namedtuple

from ..attestations import describe
from ..auth import READ, needs_credentials
from ..backends import BackendError
from ..index import PageCache
from . import pages
from .body import answer
from .errors import Forbidden, Unauthorized
from .router import Router, base_url, header, not_modified

# Pages for people kept rendered (least recently used out first): a
# project's page with its README can be tens of kB.
PEOPLE_PAGE_BYTES = 8_000_000
_Rendered = namedtuple("_Rendered", "body etag")


class PeopleApp:
    app = Router()

    def __init__(self, ctx):
        self.ctx = ctx
        self._people_cache = PageCache(PEOPLE_PAGE_BYTES)
        self._summaries_cache = (None, [])

    def _security_headers(self, request):
        request.setHeader("Content-Security-Policy", pages.CONTENT_SECURITY_POLICY)
        request.setHeader("X-Content-Type-Options", "nosniff")
        request.setHeader("Referrer-Policy", "same-origin")
        request.setHeader("Content-Type", "text/html; charset=utf-8")

    async def _people_page(self, request, key, make):
        """
        A page for people, rendered once per change of what it shows (C{key}
        includes the index's state) and answered with an ETag and 304s.
        """
        self._security_headers(request)
        request.setHeader("Cache-Control", self.ctx.page_cache_control)
        if not self.ctx.public:
            # Only readers get it: no cache may answer someone else with it.
            request.setHeader("Vary", "Authorization")
        cached = self._people_cache.get(key)
        if cached is None:
            body = await make()
            cached = _Rendered(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
            self._people_cache.put(key, cached)
        return self._answer_people_page(request, *cached)

    @staticmethod
    def _answer_people_page(request, body, etag):
        request.setHeader("ETag", etag)
        if not_modified(request, etag):
            request.setResponseCode(304)
            return b""
        return answer(request, body)

    def _summaries(self):
        """Every project, most recently updated first (once per index change)."""
        generation = self.ctx.index.generation
        if self._summaries_cache[0] != generation:
            summaries = [pages.ProjectSummary(name, list(self.ctx.index.project_files(name)),
                                              self.ctx.index.yanks.get(name, {}))
                         for name in self.ctx.index.projects]
            summaries.sort(key=lambda p: (-p.updated, p.name))
            self._summaries_cache = (generation, summaries)
        return self._summaries_cache[1]

    async def _denied(self, request):
        """
        Why the visitor may not read this repository's pages (the
        L{Unauthorized} or L{Forbidden} to answer), or None when they may.
        Credentials are checked only where reading needs them, once.
        """
        try:
            await self.ctx.authorize(request, READ)
        except (Unauthorized, Forbidden) as e:
            return e
        return None

    def _neighbours(self, request):
        """The server's other repositories, linked to their home page where
        anyone may read them, else to their sign-in link (the same for every
        visitor: the page is not made per person, nor credentials checked
        for every repository)."""
        host = header(request, "host") or "localhost"
        root = f"{'https' if request.isSecure() else 'http'}://{host}/"
        neighbours = []
        for config in self.ctx.authenticator.config.repositories:
            if config.name == self.ctx.repository.name:
                continue
            public = not needs_credentials(config, READ)
            neighbours.append(pages.Neighbour(
                config.name, f"{root}{config.name}/" + ("" if public else "?login"), public))
        return neighbours

    async def _sign_in_page(self, request, denied, anonymous_code=401, login=False):
        """
        The HTML page for a visitor who may not read this repository: why,
        a link to sign in, and the other repositories. Its status is 401
        (the browser asks for credentials) where credentials were refused
        and for C{login}, the sign-in link; 403 for credentials that may not
        read; C{anonymous_code} where none were sent.
        """
        base = base_url(request)
        sent = bool(request.requestHeaders.getRawHeaders(b"authorization"))
        if isinstance(denied, Forbidden):
            why, key = denied.message, None  # names the user: not kept
            code = 401 if login else 403
        else:
            why = "invalid" if sent else None
            key = ("sign-in", base, why)
            code = 401 if login or sent else anonymous_code
        self._security_headers(request)
        request.setHeader("Cache-Control", "no-store")
        request.setResponseCode(code)
        if code == 401:
            request.setHeader("WWW-Authenticate", Unauthorized().headers["WWW-Authenticate"])
        cached = self._people_cache.get(key) if key else None
        if cached is None:
            body = await pages.render(pages.sign_in(
                self.ctx.repository.name, base, base + "?login", why, self._neighbours(request)))
            cached = _Rendered(body, None)
            if key:
                self._people_cache.put(key, cached)
        return answer(request, cached.body)

    @app.route("/", methods=["GET", "HEAD"])
    async def home(self, request):
        """
        The projects, most recently updated first; ?q= searches names and
        summaries. A visitor who may not read them gets a page that says so,
        with a sign-in link (?login, which answers 401 until the browser has
        sent credentials that may read) and the other repositories.
        """
        denied = await self._denied(request)
        base = base_url(request)
        # "?login": Twisted's request.args leaves out a name without "=".
        if any(item.split(b"=", 1)[0] == b"login"
               for item in request.uri.partition(b"?")[2].split(b"&")):
            if denied is not None:
                return await self._sign_in_page(request, denied, login=True)
            request.setResponseCode(303)
            request.setHeader("Location", base)
            request.setHeader("Cache-Control", "no-store")
            return b""
        neighbours = self._neighbours(request)
        if denied is not None:
            # With nothing else to see here, the browser may as well ask now.
            public = any(n.public for n in neighbours)
            return await self._sign_in_page(request, denied, 200 if public else 401)
        summaries = self._summaries()
        query = request.args.get(b"q", [b""])[0].decode("utf-8", "replace").strip()[:200]
        name = self.ctx.repository.name
        if query:
            needle = query.lower()
            results = []
            for summary in summaries:
                if needle in summary.haystack:
                    results.append(summary)
                    if len(results) >= pages.SEARCH_LIMIT:
                        break
            # Search results are not kept: queries are many and cheap to answer.
            return await self._uncached_people_page(
                request, pages.home(name, base, summaries, len(self.ctx.index), query, results))
        # Only readers get here, and what they see does not depend on who
        # they are (the other repositories are listed the same for all).
        key = ("home", "read", base, self.ctx.index.generation)
        upload = pages.upload_hint(self.ctx.config, self.ctx.token_path)
        return await self._people_page(request, key, lambda: pages.render(
            pages.home(name, base, summaries, len(self.ctx.index), upload=upload,
                       neighbours=neighbours)))

    async def _uncached_people_page(self, request, tree):
        self._security_headers(request)
        request.setHeader("Cache-Control", "no-store")
        body = await pages.render(tree)
        return answer(request, body)

    async def _publishers(self, files):
        """{filename: [who published it]} of the files with a provenance (PEP 740)."""
        found = {}
        for f in files:
            if not f.provenance:
                continue
            try:
                data = await self.ctx.repository.backend.read_provenance(f)
                who = describe(json.loads(data)) if data else []
            except (BackendError, ValueError, AttributeError):
                continue  # the page, without it
            if who:
                found[f.filename] = who
        return found

    @app.route("/project/<string:name>/", methods=["GET", "HEAD"])
    @app.route("/project/<string:name>/<string:version>/", methods=["GET", "HEAD"])
    async def project_page(self, request, name, version=None):
        denied = await self._denied(request)
        if denied is not None:
            # The browser shows the page when its person cancels the prompt.
            return await self._sign_in_page(request, denied)
        project, files, yanks, shown = self.ctx.project_request(
            request, name, version, "project/{project}/" + (f"{version}/" if version else ""))
        base = base_url(request)
        key = ("project", base, project, version, shown, self.ctx.index.changed_at(project))

        async def make():
            raw = await self.ctx.release_metadata(files, shown)
            publishers = await self._publishers([f for f in files if f.version == shown])
            tree, raw_html = pages.project(self.ctx.repository.name, base, project, files, yanks,
                                           shown, raw, pinned=version is not None,
                                           status=self.ctx.index.status(project),
                                           publishers=publishers)
            return await pages.render(tree, raw_html)

        return await self._people_page(request, key, make)
