"""
Keeping the repository in order: the cleanup of what failed uploads left
(assets no index entry names, releases left empty), and the C{ppypi
github} commands: C{init} (the branch and the C{ppypi.json} layout marker)
and C{reindex} (every project's index file rebuilt from the releases'
assets).
"""

import calendar
import json
import os
import tempfile
import time
from urllib.parse import quote

from ...attestations import names_file
from ...metadata import MetadataError, inspect
from ...names import InvalidFilename, parse_filename
from ..interface import BackendError
from ..local import sha256_file
from .api import GitHubError, RateLimited
from .documents import b64
from .downloads import AssetRef
from .releases import ASSET_KEYS, PROVENANCE
from .transfer import save_body

LAYOUT_FILE = "ppypi.json"
LAYOUT = {"format": 1, "layout": "release per version; index/PROJECT.json"}
# Assets younger than this are left alone by the cleanup: another instance
# may still be indexing them.
CLEANUP_GRACE = 600.0
# A full cleanup (listing every release) runs at most this often.
CLEANUP_INTERVAL = 6 * 3600.0


def parse_time(stamp):
    """GitHub's "2024-01-01T00:00:00Z" as epoch seconds, or None."""
    try:
        return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    except (TypeError, ValueError):
        return None


def _temporary_file(folder):
    """A new file in C{folder}: (path, open for writing). Blocking."""
    fd, path = tempfile.mkstemp(dir=folder)
    return path, os.fdopen(fd, "wb")


class Maintenance:

    def __init__(self, remote, documents, releases, downloads, metadata, incoming_dir):
        self.remote = remote
        self.documents = documents
        self.releases = releases
        self.downloads = downloads
        self.metadata = metadata
        self.incoming_dir = incoming_dir
        # The first full cleanup comes a grace period after start, then every
        # CLEANUP_INTERVAL; a failed upload asks for one at the next sync.
        self._last_cleanup = remote.clock.seconds() - CLEANUP_INTERVAL + CLEANUP_GRACE

    # -- cleanup

    async def maybe_cleanup(self, files):
        remote = self.remote
        now = remote.clock.seconds()
        due = now - self._last_cleanup > CLEANUP_INTERVAL
        if not (self.releases.needs_cleanup or due) or remote.admin_token is None:
            return
        try:
            removed = await self.cleanup(files)
        except RateLimited:
            return
        except BackendError:
            remote.log.failure("repository {repo}: cleanup of leftover assets failed",
                               repo=remote.name)
            return
        self.releases.needs_cleanup = False
        self._last_cleanup = now
        if removed:
            remote.log.info("repository {repo}: removed {count} leftover assets of failed "
                            "uploads", repo=remote.name, count=removed)

    async def cleanup(self, files=None):
        """
        Delete assets that no index entry names (uploads that failed half
        way), once they are older than CLEANUP_GRACE; and releases of ppypi's
        that are left empty.
        """
        remote = self.remote
        token = remote.admin_token
        files = self.documents.files() if files is None else files
        known = set()
        for project, held in (self.documents.docs or {}).items():
            for entry in held["doc"].get("files", {}).values():
                known.update(str(entry.get(key)) for key in ASSET_KEYS)
        removed = 0
        for release in await remote.api.paginate(f"{remote.path}/releases", token):
            if "published by ppypi" not in (release.get("body") or ""):
                continue
            assets = release.get("assets") or []
            left = len(assets)
            for asset in assets:
                if str(asset["id"]) in known:
                    continue
                if not self._old_enough(asset):
                    continue
                await self.releases.delete_asset(asset["id"], token)
                removed += 1
                left -= 1
            if left == 0 and self._old_enough(release):
                try:
                    await remote.api.request(
                        "DELETE", f"{remote.path}/releases/{release['id']}", token,
                        ok=(204, 404))
                except BackendError:
                    pass
        return removed

    def _old_enough(self, item):
        stamp = parse_time(item.get("created_at") or item.get("updated_at"))
        return stamp is not None and self.remote.clock.seconds() - stamp > CLEANUP_GRACE

    # -- set-up and recovery (the ppypi github commands)

    async def init(self):
        """Create the branch and the layout marker (idempotent)."""
        remote, api = self.remote, self.remote.api
        token = remote.admin_token
        path = f"{remote.path}/contents/{LAYOUT_FILE}?ref={quote(remote.branch)}"
        try:
            await api.request("GET", path, token)
            return False
        except GitHubError as e:
            if e.status != 404:
                raise
        body = {"message": "ppypi: layout", "branch": remote.branch,
                "content": b64(json.dumps(LAYOUT, indent=1).encode())}
        try:
            await api.request("PUT", f"{remote.path}/contents/{LAYOUT_FILE}", token,
                              json_body=body, ok=(200, 201))
        except GitHubError as e:
            if e.status != 404:
                raise
            # The branch does not exist in a repository that has commits:
            # branch it off the default branch.
            repo = (await api.request("GET", remote.path, token)).json()
            ref = await api.request(
                "GET", f"{remote.path}/git/ref/heads/{quote(repo['default_branch'])}", token)
            await api.request(
                "POST", f"{remote.path}/git/refs", token, ok=(201,),
                json_body={"ref": f"refs/heads/{remote.branch}",
                           "sha": ref.json()["object"]["sha"]})
            await api.request("PUT", f"{remote.path}/contents/{LAYOUT_FILE}", token,
                              json_body=body, ok=(200, 201))
        return True

    async def reindex(self, progress=lambda done, total: None):
        """
        Rebuild every project's index file from the releases' assets
        (downloading each distribution once to hash it).
        """
        remote, run = self.remote, self.remote.run
        token = remote.admin_token
        releases = await remote.api.paginate(f"{remote.path}/releases", token)
        assets = [(r, a) for r in releases for a in (r.get("assets") or [])
                  if not a["name"].endswith((".metadata", PROVENANCE))]

        def beside(suffix):
            return {(r["id"], a["name"][:-len(suffix)]): a["id"]
                    for r in releases for a in (r.get("assets") or [])
                    if a["name"].endswith(suffix)}

        metadata_ids, provenance_ids = beside(".metadata"), beside(PROVENANCE)
        docs = {}
        for done, (release, asset) in enumerate(assets, 1):
            progress(done - 1, len(assets))
            try:
                dist = parse_filename(asset["name"])
            except InvalidFilename:
                continue
            path = await self._download(asset)
            try:
                sha = await run(sha256_file, path)
                try:
                    found = await run(inspect, path, dist.kind, asset["name"])
                    meta_sha = await run(self.metadata.put, found.raw)
                    rp, servable, summary = found.requires_python, found.servable, found.summary
                except MetadataError:
                    meta_sha, rp, servable, summary = None, None, False, None
            finally:
                await run(os.unlink, path)
            created = parse_time(asset.get("created_at")) or time.time()
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
            provenance_id = provenance_ids.get((release["id"], asset["name"]))
            if provenance_id is not None and await self._attests(
                    asset["name"] + PROVENANCE, provenance_id, asset["name"], sha):
                doc[asset["name"]]["provenance_asset_id"] = provenance_id
        progress(len(assets), len(assets))
        for project, files in docs.items():
            def replace(doc, files=files):
                doc["files"] = files
            await self.documents.update(project, token, replace)
        return sum(len(f) for f in docs.values())

    async def _attests(self, name, asset_id, filename, sha256):
        """Is the provenance asset about this file (not a leftover of other bytes)?"""
        path = await self._download({"name": name, "id": asset_id})
        try:
            data = await self.remote.run(_read, path)
        finally:
            await self.remote.run(os.unlink, path)
        return names_file(data, filename, sha256)

    async def _download(self, asset):
        """
        The asset in a new file in incoming_dir (its path): created, written
        and closed in the thread pool, never on the reactor thread.
        """
        run = self.remote.run
        url = await self.downloads.signed_url(AssetRef(asset["name"], str(asset["id"])))
        response = await self.downloads.fetch(url)
        path, f = await run(_temporary_file, self.incoming_dir)
        try:
            try:
                await save_body(response, f, run)
            finally:
                await run(f.close)
        except BaseException:
            await run(os.unlink, path)  # nothing left behind in incoming_dir
            raise
        return path


def _read(path):
    with open(path, "rb") as f:
        return f.read()
