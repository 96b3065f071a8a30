"""
The GitHub backend: distribution files as release assets of OWNER/REPO, the
index kept by ppypi itself in the repository, on BRANCH.

Layout:

- one release per project version, tagged C{PROJECT-VERSION} (normalised
  name): a release is what GitHub shows people, and a version is what they
  look for; its wheels and sdist are its assets, each with a
  C{FILENAME.metadata} asset beside it (PEP 658);
- C{index/PROJECT.json} on BRANCH: the project's files (sha256, size, upload
  time, Requires-Python, metadata hash, asset ids) and yanks. One file per
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
"""

import base64
import calendar
import hashlib
import json
import os
import random
import tempfile
import time
from collections import namedtuple
from urllib.parse import quote

import treq
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ..index import DistFile
from ..metadata import MetadataError, inspect
from ..names import InvalidFilename, parse_filename
from . import BackendError, FileMissing
from .filesystem import MetadataStore, write_atomically
from .github_api import GitHubError, RateLimited

INDEX_DIR = "index"
LAYOUT_FILE = "ppypi.json"
LAYOUT = {"format": 1, "layout": "release per version; index/PROJECT.json"}
DOC_FORMAT = 1
CACHE_VERSION = 1
# Tries at writing a project's index file before an upload gives up; between
# tries a random pause that grows (many writers at one project spread out).
MAX_INDEX_RETRIES = 12
INDEX_RETRY_PAUSE = 0.1
INDEX_RETRY_PAUSE_MAX = 3.0
# Signed download URLs live about five minutes; reuse them for one.
SIGNED_URL_TTL = 60.0
# Assets younger than this are left alone by the cleanup: another instance
# may still be indexing them.
CLEANUP_GRACE = 600.0
# A full cleanup (listing every release) runs at most this often.
CLEANUP_INTERVAL = 6 * 3600.0


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def release_tag(project, version):
    return f"{project}-{version}"


def doc_path(project):
    return f"{INDEX_DIR}/{project}.json"


class ListResult:
    """What a sync found (the shape L{Repository} expects of a backend)."""

    def __init__(self, files, fetched):
        self.files = files
        self.hashed = 0
        self.fetched = fetched
        self.skipped = []
        self.warnings = []


# What signed_url needs of an asset: its file name and asset id.
AssetRef = namedtuple("AssetRef", "filename location")


def dist_from_entry(filename, entry):
    dist = parse_filename(filename)
    return DistFile(
        filename, dist.project, dist.version, dist.kind, entry["sha256"], entry["size"],
        int(entry["upload_time"] * 1e9), entry.get("requires_python"), str(entry["asset_id"]),
        entry.get("metadata_sha256"), bool(entry.get("core_metadata")), entry["upload_time"],
        entry.get("summary"))


class GitHubBackend:
    """
    @param api: a L{GitHubAPI} for the configured api_url.
    @param config: the repository's L{RepositoryConfig} (owner, repo, branch,
        downloads, admin_secret).
    """

    log = Logger()

    def __init__(self, config, api, state_dir, run_in_thread, clock):
        self.name = config.name
        self.config = config
        self.api = api
        self.state_dir = state_dir
        self._run = run_in_thread
        self._clock = clock
        self.repo_path = f"/repos/{config.owner}/{config.repo}"
        self.metadata = MetadataStore(os.path.join(state_dir, "metadata"))
        self._cache_path = os.path.join(state_dir, "github-index.json")
        self._tree_etag = None
        self._docs = None          # project -> {"blob": sha, "doc": {...}}
        self._signed = {}          # asset id -> (url, expiry)
        # The first full cleanup comes a grace period after start, then every
        # CLEANUP_INTERVAL; a failed upload asks for one at the next sync.
        self._needs_cleanup = False
        self._last_cleanup = clock.seconds() - CLEANUP_INTERVAL + CLEANUP_GRACE
        self.hashed_total = 0
        self.incoming_dir = os.path.join(state_dir, "incoming")

    # -- credentials

    @property
    def admin_token(self):
        return self.config.admin_secret.value if self.config.admin_secret else None

    def describe(self):
        return f"github {self.config.owner}/{self.config.repo}@{self.config.branch}"

    def prepare(self):
        """Start-up (blocking): folders, and leftovers of interrupted uploads."""
        os.makedirs(self.incoming_dir, exist_ok=True)
        removed = 0
        for name in os.listdir(self.incoming_dir):
            os.unlink(os.path.join(self.incoming_dir, name))
            removed += 1
        return removed

    async def permissions(self, token):
        """
        What GitHub grants C{token} on the repository: a set of "read" and
        "write", or None when the token is not valid for it.
        """
        try:
            response = await self.api.request("GET", self.repo_path, token)
        except GitHubError as e:
            if e.status in (401, 403, 404):
                return None
            raise
        granted = (response.json() or {}).get("permissions") or {}
        scopes = set()
        if granted.get("pull") or granted.get("push") or granted.get("admin"):
            scopes.add("read")
        if granted.get("push") or granted.get("admin") or granted.get("maintain"):
            scopes.add("write")
        return frozenset(scopes) or None

    # -- the local copy of the index

    def _load_cache(self):
        try:
            with open(self._cache_path, "rb") as f:
                data = json.load(f)
            if data.get("version") != CACHE_VERSION or data.get("source") != self.describe():
                return None, {}
            return data.get("tree_etag"), data["docs"]
        except FileNotFoundError:
            return None, {}
        except (ValueError, KeyError, TypeError, OSError) as e:
            self.log.warn("repository {repo}: {path} unreadable ({e}); fetching the index again",
                          repo=self.name, path=self._cache_path, e=e)
            return None, {}

    def _save_cache(self, tree_etag, docs):
        os.makedirs(self.state_dir, exist_ok=True)
        data = {"version": CACHE_VERSION, "source": self.describe(),
                "tree_etag": tree_etag, "docs": docs}
        write_atomically(self._cache_path, json.dumps(data, separators=(",", ":")).encode())

    def _files(self):
        files = []
        for project, held in self._docs.items():
            for filename, entry in held["doc"].get("files", {}).items():
                try:
                    files.append(dist_from_entry(filename, entry))
                except (InvalidFilename, KeyError, TypeError, ValueError):
                    self.log.warn("repository {repo}: skipped a bad entry {filename} in {path}",
                                  repo=self.name, filename=filename, path=doc_path(project))
        return files

    async def _fetch_doc(self, blob_sha):
        response = await self.api.request(
            "GET", f"{self.repo_path}/git/blobs/{blob_sha}", self.admin_token)
        blob = response.json()
        return json.loads(base64.b64decode(blob["content"]))

    async def list_files(self):
        """
        Sync with the repository: one conditional request when nothing changed.
        """
        if self._docs is None:
            self._tree_etag, self._docs = await self._run(self._load_cache)
        branch = quote(self.config.branch, safe="")
        try:
            response = await self.api.request(
                "GET", f"{self.repo_path}/git/trees/{branch}?recursive=1", self.admin_token,
                etag=self._tree_etag if self._docs is not None else None)
        except GitHubError as e:
            if e.status in (404, 409):
                raise BackendError(
                    f"{self.describe()}: branch not found or repository empty; "
                    "run: ppypi github init") from None
            raise
        fetched = 0
        if response.status != 304:
            tree = response.json()
            wanted = {}
            for item in tree.get("tree", []):
                path = item.get("path", "")
                if item.get("type") == "blob" and path.startswith(INDEX_DIR + "/") \
                        and path.endswith(".json"):
                    wanted[path[len(INDEX_DIR) + 1:-len(".json")]] = item["sha"]
            docs = {}
            for project, blob_sha in wanted.items():
                held = self._docs.get(project)
                if held is not None and held["blob"] == blob_sha:
                    docs[project] = held
                    continue
                try:
                    doc = await self._fetch_doc(blob_sha)
                except (ValueError, KeyError, TypeError):
                    self.log.warn("repository {repo}: {path} is not valid JSON; skipped",
                                  repo=self.name, path=doc_path(project))
                    continue
                fetched += 1
                docs[project] = {"blob": blob_sha, "doc": doc}
            self._docs = docs
            self._tree_etag = response.header("etag")
            await self._run(self._save_cache, self._tree_etag, docs)
        files = self._files()
        await self._maybe_cleanup(files)
        return ListResult(files, fetched)

    async def load_yanks(self):
        if self._docs is None:
            return {}
        return {project: dict(held["doc"].get("yanked", {}))
                for project, held in self._docs.items() if held["doc"].get("yanked")}

    # -- writing the index

    async def _read_doc(self, project, token):
        """(doc, blob sha or None) of a project's index file, fresh from GitHub."""
        path = f"{self.repo_path}/contents/{doc_path(project)}?ref={quote(self.config.branch)}"
        try:
            response = await self.api.request("GET", path, token)
        except GitHubError as e:
            if e.status == 404:
                return {"format": DOC_FORMAT, "project": project, "files": {}, "yanked": {}}, None
            raise
        found = response.json()
        if found.get("encoding") == "none":
            # Over 1 MiB the contents API leaves the content out: the blob has it.
            return await self._fetch_doc(found["sha"]), found["sha"]
        return json.loads(base64.b64decode(found["content"])), found["sha"]

    async def _update_doc(self, project, token, change):
        """
        Read-modify-write a project's index file, with the blob sha as the
        precondition; on a conflict with another writer, read again and redo.

        @param change: C{f(doc) -> result}; it edits C{doc} in place, or
            returns without editing (then nothing is written).
        @return: what C{change} returned.
        """
        for attempt in range(MAX_INDEX_RETRIES):
            if attempt:
                pause = min(INDEX_RETRY_PAUSE_MAX, INDEX_RETRY_PAUSE * 2 ** attempt)
                await deferLater(self._clock, random.uniform(0, pause), lambda: None)
            doc, sha = await self._read_doc(project, token)
            before = json.dumps(doc, sort_keys=True)
            result = change(doc)
            after = json.dumps(doc, sort_keys=True, indent=1)
            if json.dumps(doc, sort_keys=True) == before:
                return result
            body = {"message": f"ppypi: update {project}", "content": _b64(after.encode()),
                    "branch": self.config.branch}
            if sha is not None:
                body["sha"] = sha
            try:
                response = await self.api.request(
                    "PUT", f"{self.repo_path}/contents/{doc_path(project)}", token,
                    json_body=body, ok=(200, 201), retry=False)
            except GitHubError as e:
                if e.status in (409, 422):
                    self.log.info("repository {repo}: {path} changed under us; retrying",
                                  repo=self.name, path=doc_path(project))
                    continue
                raise
            blob_sha = (response.json() or {}).get("content", {}).get("sha")
            if self._docs is not None and blob_sha:
                self._docs[project] = {"blob": blob_sha, "doc": doc}
                # A restart then fetches nothing it wrote itself.
                await self._run(self._save_cache, self._tree_etag, self._docs)
            return result
        raise BackendError(f"{doc_path(project)}: still conflicting after "
                           f"{MAX_INDEX_RETRIES} tries")

    # -- uploads

    async def _release(self, project, version, token):
        tag = release_tag(project, version)
        try:
            response = await self.api.request(
                "POST", f"{self.repo_path}/releases", token, ok=(201,),
                json_body={"tag_name": tag, "name": tag,
                           "body": f"{project} {version}, published by ppypi.",
                           "target_commitish": self.config.branch})
        except GitHubError as e:
            if e.status != 422 or not e.has_error_code("already_exists"):
                raise
            response = await self.api.request(
                "GET", f"{self.repo_path}/releases/tags/{quote(tag, safe='')}", token)
        return response.json()

    async def _upload_asset(self, release, name, data, size, token):
        """Upload bytes or a file to the release; None if the name is taken."""
        template = release["upload_url"]
        url = template.split("{", 1)[0] + "?name=" + quote(name, safe="")
        try:
            response = await self.api.request(
                "POST", url, token, data=data, ok=(201,), retry=False,
                # treq sends Content-Length from the body (GitHub requires it).
                headers={"Content-Type": "application/octet-stream"},
                timeout=max(self.api.timeout, size / (1 << 20)))
        except GitHubError as e:
            if e.status == 422 and e.has_error_code("already_exists"):
                return None
            raise
        return response.json()

    async def _delete_asset(self, asset_id, token):
        try:
            await self.api.request("DELETE", f"{self.repo_path}/releases/assets/{asset_id}",
                                   token, ok=(204, 404))
        except BackendError:
            self._needs_cleanup = True  # the next sync tries again

    async def store(self, upload, checked, overwrite=False, principal=None, replacing=None):
        """
        Publish an upload: release, asset, metadata asset, index file.

        @return: (status, DistFile) as L{FilesystemBackend.store}.
        """
        token = getattr(principal, "token", None) or self.admin_token
        if token is None:
            raise BackendError(f"{self.describe()}: no token to write with (admin secret)")
        dist = checked.dist
        release = await self._release(dist.project, dist.version, token)
        if replacing is not None:
            # allow_overwrite: the old assets go first (asset names are unique).
            old = self._entry(dist.project, dist.filename)
            if old:
                await self._delete_asset(old["asset_id"], token)
                if old.get("metadata_asset_id"):
                    await self._delete_asset(old["metadata_asset_id"], token)
        with open(upload.path, "rb") as f:
            asset = await self._upload_asset(release, dist.filename, f, upload.size, token)
        if asset is None:
            return await self._existing(dist, upload, token)
        meta_sha = await self._run(self.metadata.put, checked.metadata)
        meta_asset = None
        try:
            meta_asset = await self._upload_asset(
                release, dist.filename + ".metadata", checked.metadata, len(checked.metadata),
                token)
            entry = {
                "version": dist.version, "kind": dist.kind, "sha256": upload.sha256,
                "size": upload.size, "upload_time": time.time(),
                "requires_python": checked.requires_python, "metadata_sha256": meta_sha,
                "core_metadata": checked.servable, "release_id": release["id"],
                "asset_id": asset["id"],
                "metadata_asset_id": meta_asset["id"] if meta_asset else None,
                "summary": checked.summary,
            }

            def add(doc):
                existing = doc.setdefault("files", {}).get(dist.filename)
                if existing is not None and not overwrite:
                    return "same" if existing.get("sha256") == upload.sha256 else "conflict"
                doc["files"][dist.filename] = entry
                return "stored"

            status = await self._update_doc(dist.project, token, add)
        except BaseException:
            # Leave nothing half made: without an index entry the asset is
            # junk. But the index write may have landed with its answer lost:
            # then the asset is published, and stays.
            indexed = await self._indexed_asset(dist, asset["id"], token)
            if indexed:
                return "stored", dist_from_entry(dist.filename, entry)
            if indexed is False:
                await self._delete_asset(asset["id"], token)
                if meta_asset:
                    await self._delete_asset(meta_asset["id"], token)
            raise
        if status != "stored":
            await self._delete_asset(asset["id"], token)
            if meta_asset:
                await self._delete_asset(meta_asset["id"], token)
            if status == "conflict":
                return "conflict", None
            return "same", self._indexed(dist.project, dist.filename)
        return "stored", dist_from_entry(dist.filename, entry)

    async def _indexed_asset(self, dist, asset_id, token):
        """Does the index (fresh from GitHub) name this asset? None: cannot tell."""
        try:
            doc, _ = await self._read_doc(dist.project, token)
        except BackendError:
            self._needs_cleanup = True  # unknown: the cleanup decides later
            return None
        entry = doc.get("files", {}).get(dist.filename) or {}
        return entry.get("asset_id") == asset_id

    def _entry(self, project, filename):
        held = (self._docs or {}).get(project)
        return held and held["doc"].get("files", {}).get(filename)

    def _indexed(self, project, filename):
        entry = self._entry(project, filename)
        return dist_from_entry(filename, entry) if entry else None

    async def _existing(self, dist, upload, token):
        """The asset name is taken: same file, other file, or a leftover."""
        doc, _ = await self._read_doc(dist.project, token)
        entry = doc.get("files", {}).get(dist.filename)
        if entry is not None and entry.get("sha256") == upload.sha256:
            return "same", dist_from_entry(dist.filename, entry)
        # Another file, or an upload in progress elsewhere, or a leftover the
        # cleanup will remove: either way not ours to overwrite now.
        self._needs_cleanup = True
        return "conflict", None

    async def delete(self, dist, principal=None):
        token = getattr(principal, "token", None) or self.admin_token

        def drop(doc):
            entry = doc.get("files", {}).pop(dist.filename, None)
            return entry

        entry = await self._update_doc(dist.project, token, drop)
        if entry:
            await self._delete_asset(entry["asset_id"], token)
            if entry.get("metadata_asset_id"):
                await self._delete_asset(entry["metadata_asset_id"], token)

    async def set_yank(self, project, version, reason, principal=None):
        token = getattr(principal, "token", None) or self.admin_token

        def change(doc):
            yanked = doc.setdefault("yanked", {})
            if reason is None:
                yanked.pop(version, None)
            else:
                yanked[version] = reason

        await self._update_doc(project, token, change)
        return await self.load_yanks()

    # -- downloads

    async def signed_url(self, dist, token=None):
        """
        The short-lived URL GitHub gives for the asset (cached briefly).

        @param dist: a L{DistFile} or L{AssetRef} (its filename and location).
        """
        cached = self._signed.get(dist.location)
        now = self._clock.seconds()
        if cached and cached[1] > now:
            return cached[0]
        try:
            response = await self.api.request(
                "GET", f"{self.repo_path}/releases/assets/{dist.location}",
                token or self.admin_token, accept="application/octet-stream", ok=(302,))
        except GitHubError as e:
            if e.status == 404:
                raise FileMissing(dist.filename) from None
            raise
        url = response.header("location")
        if not url:
            raise BackendError("GitHub gave no download URL")
        if len(self._signed) > 10000:
            self._signed.clear()
        self._signed[dist.location] = (url, now + SIGNED_URL_TTL)
        return url

    async def fetch(self, url):
        """
        GET a signed URL, streaming: no Authorization header ever goes there.
        Returns the treq response (unbuffered).
        """
        return await self.api.http.request(
            "GET", url, headers={"User-Agent": "ppypi"}, allow_redirects=False,
            unbuffered=True, timeout=self.api.timeout, reactor=self._clock)

    async def read_metadata(self, sha256, dist=None):
        data = await self._run(self.metadata.get, sha256)
        if data is not None or dist is None:
            return data
        # Uploaded through another instance: fetch the metadata asset once.
        entry = self._entry(dist.project, dist.filename)
        if not entry or not entry.get("metadata_asset_id"):
            return None
        url = await self.signed_url(AssetRef(dist.filename + ".metadata",
                                             str(entry["metadata_asset_id"])))
        response = await self.fetch(url)
        data = await response.content()
        if response.code != 200 or hashlib.sha256(data).hexdigest() != sha256:
            return None
        await self._run(self.metadata.put, data)
        return data

    # -- cleanup

    async def _maybe_cleanup(self, files):
        now = self._clock.seconds()
        due = now - self._last_cleanup > CLEANUP_INTERVAL
        if not (self._needs_cleanup or due) or self.admin_token is None:
            return
        try:
            removed = await self.cleanup(files)
        except RateLimited:
            return
        except BackendError:
            self.log.failure("repository {repo}: cleanup of leftover assets failed", repo=self.name)
            return
        self._needs_cleanup = False
        self._last_cleanup = now
        if removed:
            self.log.info("repository {repo}: removed {count} leftover assets of failed uploads",
                          repo=self.name, count=removed)

    async def cleanup(self, files=None):
        """
        Delete assets that no index entry names (uploads that failed half
        way), once they are older than CLEANUP_GRACE; and releases of ppypi's
        that are left empty.
        """
        token = self.admin_token
        files = self._files() if files is None else files
        known = set()
        for project, held in (self._docs or {}).items():
            for entry in held["doc"].get("files", {}).values():
                known.add(str(entry.get("asset_id")))
                known.add(str(entry.get("metadata_asset_id")))
        removed = 0
        for release in await self.api.paginate(f"{self.repo_path}/releases", token):
            if "published by ppypi" not in (release.get("body") or ""):
                continue
            assets = release.get("assets") or []
            left = len(assets)
            for asset in assets:
                if str(asset["id"]) in known:
                    continue
                if not self._old_enough(asset):
                    continue
                await self._delete_asset(asset["id"], token)
                removed += 1
                left -= 1
            if left == 0 and self._old_enough(release):
                try:
                    await self.api.request("DELETE", f"{self.repo_path}/releases/{release['id']}",
                                           token, ok=(204, 404))
                except BackendError:
                    pass
        return removed

    def _old_enough(self, item):
        stamp = _parse_time(item.get("created_at") or item.get("updated_at"))
        return stamp is not None and self._clock.seconds() - stamp > CLEANUP_GRACE

    # -- set-up and recovery (the ppypi github commands)

    async def init(self):
        """Create the branch and the layout marker (idempotent)."""
        token = self.admin_token
        path = f"{self.repo_path}/contents/{LAYOUT_FILE}?ref={quote(self.config.branch)}"
        try:
            await self.api.request("GET", path, token)
            return False
        except GitHubError as e:
            if e.status != 404:
                raise
        body = {"message": "ppypi: layout", "branch": self.config.branch,
                "content": _b64(json.dumps(LAYOUT, indent=1).encode())}
        try:
            await self.api.request("PUT", f"{self.repo_path}/contents/{LAYOUT_FILE}", token,
                                   json_body=body, ok=(200, 201))
        except GitHubError as e:
            if e.status != 404:
                raise
            # The branch does not exist in a repository that has commits:
            # branch it off the default branch.
            repo = (await self.api.request("GET", self.repo_path, token)).json()
            ref = await self.api.request(
                "GET", f"{self.repo_path}/git/ref/heads/{quote(repo['default_branch'])}", token)
            await self.api.request(
                "POST", f"{self.repo_path}/git/refs", token, ok=(201,),
                json_body={"ref": f"refs/heads/{self.config.branch}",
                           "sha": ref.json()["object"]["sha"]})
            await self.api.request("PUT", f"{self.repo_path}/contents/{LAYOUT_FILE}", token,
                                   json_body=body, ok=(200, 201))
        return True

    async def reindex(self, progress=lambda done, total: None):
        """
        Rebuild every project's index file from the releases' assets
        (downloading each distribution once to hash it).
        """
        token = self.admin_token
        releases = await self.api.paginate(f"{self.repo_path}/releases", token)
        assets = [(r, a) for r in releases for a in (r.get("assets") or [])
                  if not a["name"].endswith(".metadata")]
        metadata_ids = {(r["id"], a["name"][:-len(".metadata")]): a["id"]
                        for r in releases for a in (r.get("assets") or [])
                        if a["name"].endswith(".metadata")}
        docs = {}
        for done, (release, asset) in enumerate(assets, 1):
            progress(done - 1, len(assets))
            try:
                dist = parse_filename(asset["name"])
            except InvalidFilename:
                continue
            url = await self.signed_url(AssetRef(asset["name"], str(asset["id"])))
            response = await self.fetch(url)
            fd, path = tempfile.mkstemp(dir=self.incoming_dir)
            with os.fdopen(fd, "wb") as f:
                await treq.collect(response, f.write)
            try:
                sha = await self._run(_sha256_path, path)
                try:
                    found = await self._run(inspect, path, dist.kind, asset["name"])
                    meta_sha = await self._run(self.metadata.put, found.raw)
                    rp, servable, summary = found.requires_python, found.servable, found.summary
                except MetadataError:
                    meta_sha, rp, servable, summary = None, None, False, None
            finally:
                os.unlink(path)
            created = _parse_time(asset.get("created_at")) or time.time()
            doc = docs.setdefault(dist.project, {})
            doc[asset["name"]] = {
                "version": dist.version, "kind": dist.kind, "sha256": sha,
                "size": asset.get("size", 0), "upload_time": created,
                "requires_python": rp, "metadata_sha256": meta_sha,
                "core_metadata": servable, "release_id": release["id"],
                "asset_id": asset["id"],
                "metadata_asset_id": metadata_ids.get((release["id"], asset["name"])),
                "summary": summary,
            }
        progress(len(assets), len(assets))
        for project, files in docs.items():
            def replace(doc, files=files):
                doc["files"] = files
            await self._update_doc(project, token, replace)
        return sum(len(f) for f in docs.values())



def _parse_time(stamp):
    """GitHub's "2024-01-01T00:00:00Z" as epoch seconds, or None."""
    try:
        return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    except (TypeError, ValueError):
        return None


def _sha256_path(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

