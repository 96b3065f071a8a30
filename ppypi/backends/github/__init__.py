"""
The GitHub backend: distribution files as release assets of OWNER/REPO, the
index kept by ppypi itself in the repository, on BRANCH.

Layout:

- one release per project version, tagged C{PROJECT-VERSION} (normalised
  name): a release is what GitHub shows people, and a version is what they
  look for; its wheels and sdist are its assets, each with a
  C{FILENAME.metadata} asset beside it (PEP 658), and a
  C{FILENAME.provenance} one when its attestations were verified (PEP 740);
- C{index/PROJECT.json} on BRANCH: the project's files (sha256, size, upload
  time, Requires-Python, metadata hash, asset ids), yanks and status (PEP 792). One file per
  project keeps every upload's index update small and independent of the
  repository's size, and lets a sync fetch only the projects that changed;
- C{ppypi.json} on BRANCH marks the layout (C{ppypi github init}).

A sync is one conditional request for the branch's tree: unchanged, it is a
304, which GitHub does not count against the rate limit. Changed, only the
blobs of changed project files are fetched.

An upload costs five API calls, whatever the size of the repository: create
the release (or, when it exists, one more call to look it up), upload the
asset, upload its metadata, read the project's index file and write it back
with the blob sha as a precondition (a conflict with another writer costs
two more calls per retry).

The parts, by concern: L{api} (the REST client), L{remote} (what they
share), L{documents} (the index files and their local copy), L{releases}
(storing and deleting files as assets), L{downloads} (signed URLs,
metadata), L{maintenance} (cleanup, init, reindex), L{transfer} (file
bodies in the thread pool). L{GitHubBackend} puts them together behind the
L{ppypi.backends.interface.Backend} interface.
"""

import os
from types import SimpleNamespace

from twisted.logger import Logger

from ...validate import ConfigError
from ..interface import Listing
from ..local import LocalHeldNames, LocalTokens, MetadataStore, empty_incoming
from ..registry import BackendType, register
from .api import GitHubAPI, GitHubError, RateLimited
from .documents import IndexDocuments
from .downloads import Downloads
from .maintenance import CLEANUP_GRACE, CLEANUP_INTERVAL, LAYOUT, LAYOUT_FILE, Maintenance
from .releases import Releases
from .remote import Remote

# What other modules (the CLI, the tests) import from here.
__all__ = ["GITHUB", "GitHubBackend", "GitHubAPI", "GitHubError", "RateLimited",
           "CLEANUP_GRACE", "CLEANUP_INTERVAL", "LAYOUT", "LAYOUT_FILE"]


class GitHubBackend(LocalHeldNames, LocalTokens):
    """
    Upload tokens are kept on the server (C{tokens.json} in its state
    folder), not in the repository: everyone who may pull it would read
    their records, and every change would be a commit in its history.

    @param api: a L{GitHubAPI} for the configured api_url.
    @param config: the repository's L{RepositoryConfig} (owner, repo, branch,
        downloads, admin_secret).
    """

    log = Logger()

    def __init__(self, config, api, state_dir, run_in_thread, clock):
        self.name = config.name
        self.state_dir = state_dir
        self._run = run_in_thread  # LocalHeldNames runs through it
        self.incoming_dir = os.path.join(state_dir, "incoming")
        self.hashed_total = 0
        self.metadata = MetadataStore(os.path.join(state_dir, "metadata"))
        self.remote = Remote(config, api, run_in_thread, clock, self.log)
        self.documents = IndexDocuments(self.remote, state_dir)
        self.releases = Releases(self.remote, self.documents, self.metadata)
        self.downloads = Downloads(self.remote, self.documents, self.metadata)
        self.maintenance = Maintenance(self.remote, self.documents, self.releases,
                                       self.downloads, self.metadata, self.incoming_dir)

    def describe(self):
        return self.remote.describe()

    def status(self):
        return {"hashed_since_start": self.hashed_total}

    def prepare(self):
        """Start-up (blocking): the folders, and uploads a crash interrupted."""
        return empty_incoming(self.incoming_dir)

    async def permissions(self, token):
        return await self.remote.permissions(token)

    async def list_files(self):
        """Sync with the repository: one conditional request when nothing changed."""
        fetched = await self.documents.sync()
        files = self.documents.files()
        await self.maintenance.maybe_cleanup(files)
        return Listing(files, fetched=fetched)

    async def load_yanks(self):
        return self.documents.yanks()

    async def set_yank(self, project, version, reason, principal=None):
        token = getattr(principal, "token", None) or self.remote.admin_token
        return await self.documents.set_yank(project, version, reason, token)

    async def load_statuses(self):
        return self.documents.statuses()

    async def set_status(self, project, status, reason, principal=None):
        token = getattr(principal, "token", None) or self.remote.admin_token
        return await self.documents.set_status(project, status, reason, token)

    async def read_provenance(self, dist):
        return await self.downloads.read_provenance(dist)

    async def store(self, upload, checked, overwrite=False, principal=None, replacing=None):
        return await self.releases.store(upload, checked, overwrite, principal, replacing)

    async def delete(self, dist, principal=None):
        await self.releases.delete(dist, principal)

    async def download(self, dist, start=0, read=0, principal=None):
        return await self.downloads.download(dist, start, read, principal)

    async def read_metadata(self, sha256, dist=None):
        return await self.downloads.read_metadata(sha256, dist)

    # -- the ppypi github commands

    async def init(self):
        return await self.maintenance.init()

    async def reindex(self, progress=lambda done, total: None):
        return await self.maintenance.reindex(progress)

    async def cleanup(self, files=None):
        return await self.maintenance.cleanup(files)


# -- the kind of repository ---------------------------------------------------

DOWNLOAD_MODES = ("redirect", "proxy")
# The access mode in which the password is a GitHub token.
STORE_MODE = "github"


def _settings(checker, spec, key, root=None):
    out = SimpleNamespace()
    for field in ("owner", "repo"):
        if field not in spec:
            checker.fail(f"{key}.{field}", "is required for a github repository")
        setattr(out, field, checker.string(spec[field], f"{key}.{field}"))
    out.branch = checker.string(spec.get("branch", "main"), f"{key}.branch")
    api_url = checker.string(spec.get("api_url", "https://api.github.com"), f"{key}.api_url")
    if not api_url.startswith(("https://", "http://")):
        checker.fail(f"{key}.api_url", "must be an http(s) URL")
    out.api_url = api_url.rstrip("/")
    downloads = spec.get("downloads", "redirect")
    if downloads not in DOWNLOAD_MODES:
        checker.fail(f"{key}.downloads", f"must be redirect or proxy, not {downloads!r}")
    out.downloads = downloads
    return out


def _toml_settings(checker, spec, key, root, name):
    """private-pypi's github table: GitHub's permissions decide."""
    return _settings(checker, spec, key), {"read": STORE_MODE, "write": STORE_MODE}


# Defined here, not in a submodule: the registry orders the built-in kinds
# by their factory's module (BUILTIN names "ppypi.backends.github").
def _create(context):
    rc = context.config
    if rc.write not in (STORE_MODE, ()) and rc.admin_secret is None:
        raise ConfigError("--admin-secret", rc.name,
                          "a github repository written by local users needs an admin "
                          "secret (a token with push access) to write with")
    if rc.admin_secret is None:
        GitHubBackend.log.warn(
            "repository {repo}: no admin secret; syncing {owner}/{name} anonymously "
            "(a private repository will not be readable)",
            repo=rc.name, owner=rc.settings.owner, name=rc.settings.repo)
    http = context.http
    if http is None:
        from treq.client import HTTPClient
        from twisted.web.client import Agent, HTTPConnectionPool
        http = HTTPClient(Agent(context.clock, pool=HTTPConnectionPool(context.clock)))
    api = GitHubAPI(http, rc.settings.api_url, context.clock)
    api.on_retry = context.on_retry or (lambda: None)
    return GitHubBackend(rc, api, context.state_dir, context.run_in_thread, context.clock)


GITHUB = register(BackendType(
    "github", keys={"owner", "repo", "branch", "api_url", "downloads"}, settings=_settings,
    factory=_create, store_mode=STORE_MODE, toml_name="github",
    toml_keys={"owner", "repo", "branch", "index_filename", "api_url", "downloads"},
    toml_settings=_toml_settings))
