"""
What the parts of one repository's web layer share: the repository and
its index, who may do what (L{RepositoryContext.authorize}), and the
lookups that several parts make (a project's files for its pages and its
JSON).
"""

from packaging.version import InvalidVersion
from twisted.logger import Logger

from ..attestations import AttestationVerifier
from ..auth import READ, WRITE, needs_credentials, parse_basic, permitted
from ..backends import BackendError
from ..index import PageCache
from ..simple_pages import latest_version
from ..names import is_valid_name, normalize
from . import pypi_json
from .errors import Forbidden, HTTPError, NotFound, Unauthorized, Unavailable
from .router import base_url


# The memory small files may take, per repository: a few thousand small
# wheels, the ones asked for most recently.
SMALL_FILES_BYTES = 32_000_000


class RepositoryContext:
    """
    One repository as the web layer sees it.

    @param extra_index_url: where unknown projects are redirected (ends in
        "/"), or None.
    @param is_reserved: C{f(normalised name) -> bool}, names never redirected.
    @param token_path: the zero-configuration upload token's file, or None.
    """

    log = Logger()

    def __init__(self, repository, authenticator, run_in_thread, extra_index_url=None,
                 is_reserved=lambda name: False, metrics=None, token_path=None):
        self.repository = repository
        self.index = repository.index
        self.config = repository.config
        self.authenticator = authenticator
        self.run = run_in_thread
        self.extra_index_url = extra_index_url
        self.is_reserved = is_reserved
        self.metrics = metrics
        self.token_path = token_path
        # The mirror's context that answers names this repository never
        # held (its configuration's upstream), or None.
        self.upstream = None
        # The verifier of uploads' attestations; the tap gives the one of
        # the configured trusted root.
        self.attestations = AttestationVerifier()
        # Small files and core metadata, kept once read (ppypi.web.packages).
        self.small_files = PageCache(SMALL_FILES_BYTES)
        self.public = not needs_credentials(self.config, READ)
        scope = "public" if self.public else "private"
        # Cache-Control of the index's pages (the configuration is fixed).
        self.page_cache_control = f"{scope}, max-age={self.config.page_max_age}".encode("ascii")

    async def authorize(self, request, need):
        """
        Check the request may C{need} (READ or WRITE) this repository.

        @return: the L{Principal}, or None where no credentials are needed.
        @raise Unauthorized: no or wrong credentials (401).
        @raise Forbidden: right credentials, no permission (403).
        """
        config = self.config
        if not needs_credentials(config, need):
            return None
        headers = request.requestHeaders.getRawHeaders(b"authorization") or []
        if len(headers) > 1:
            raise Unauthorized("More than one Authorization header")
        try:
            credentials = parse_basic(headers[0] if headers else None)
        except ValueError:
            raise Unauthorized("Malformed credentials") from None
        if credentials is None:
            raise Unauthorized()
        # A store that cannot say what a token may do raises BackendError: 503.
        principal = await self.authenticator.authenticate(config, credentials, need)
        if principal is None:
            raise Unauthorized("Invalid credentials")
        if not permitted(config, principal, need):
            what = "upload to" if need == WRITE else "read"
            raise Forbidden(f"{principal.name} may not {what} repository {config.name}")
        return principal

    def require_ready(self):
        if not self.index.ready:
            raise Unavailable("index is being built; try again shortly", retry_after=5)

    def project_request(self, request, name, version, canonical):
        """
        What a page about one project (or one of its versions) needs: the
        normalised name, its files, its yanks and the version to show (the
        one asked for, or the latest that is neither yanked nor a
        pre-release). A name that is not normalised is redirected to
        C{canonical} (formatted with the project's name). Call it once the
        visitor may read.
        """
        self.require_ready()
        if not is_valid_name(name):
            raise NotFound("not a valid project name")
        project = normalize(name)
        if project != name:
            location = base_url(request) + canonical.format(project=project)
            raise HTTPError("Moved Permanently", 301, {"Location": location})
        files = list(self.index.project_files(project))
        if not files:
            raise NotFound(f"no project {project}")
        yanks = self.index.yanks.get(project, {})
        if version is None:
            return project, files, yanks, latest_version({f.version for f in files}, yanks)
        try:
            release = self.repository.release(project, version)
        except InvalidVersion:
            raise NotFound("no such version") from None
        if not release:
            raise NotFound(f"{project} has no version {version}")
        return project, files, yanks, release[0].version

    async def release_metadata(self, files, version):
        """The core metadata describing a release (from a wheel if it has
        one), or None: a page without the metadata's fields beats no page."""
        source = pypi_json.metadata_file([f for f in files if f.version == version])
        if source is None:
            return None
        try:
            return await self.repository.backend.read_metadata(source.metadata_sha256, source)
        except BackendError:
            return None
