"""
Distribution files as release assets: one release per project version,
tagged C{PROJECT-VERSION} (a release is what GitHub shows people, and a
version is what they look for); each file is an asset with a
C{FILENAME.metadata} asset beside it (PEP 658), and C{FILENAME.provenance}
when the upload's attestations were verified (PEP 740). Storing a file publishes
its assets, then its index entry; deleting one goes the other way.
"""

import time
from urllib.parse import quote

from ..interface import BackendError, Conflict, Stored
from .api import GitHubError
from .documents import dist_from_entry
from .transfer import ThreadedFileBody


#: A file's PEP 740 provenance is the asset FILENAME.provenance.
PROVENANCE = ".provenance"
#: The asset ids an index entry may name.
ASSET_KEYS = ("asset_id", "metadata_asset_id", "provenance_asset_id")


def release_tag(project, version):
    return f"{project}-{version}"


class Releases:
    """
    @ivar needs_cleanup: something may have been left behind (an asset that
        could not be deleted, an upload that failed half way): the next
        sync runs a cleanup.
    """

    def __init__(self, remote, documents, metadata):
        self.remote = remote
        self.documents = documents
        self.metadata = metadata
        self.needs_cleanup = False

    async def release(self, project, version, token):
        remote = self.remote
        tag = release_tag(project, version)
        try:
            response = await remote.api.request(
                "POST", f"{remote.path}/releases", token, ok=(201,),
                json_body={"tag_name": tag, "name": tag,
                           "body": f"{project} {version}, published by ppypi.",
                           "target_commitish": remote.branch})
        except GitHubError as e:
            if e.status != 422 or not e.has_error_code("already_exists"):
                raise
            response = await remote.api.request(
                "GET", f"{remote.path}/releases/tags/{quote(tag, safe='')}", token)
        return response.json()

    async def upload_asset(self, release, name, data, size, token):
        """Upload bytes or a body producer to the release; None if the name is taken."""
        api = self.remote.api
        template = release["upload_url"]
        url = template.split("{", 1)[0] + "?name=" + quote(name, safe="")
        try:
            response = await api.request(
                "POST", url, token, data=data, ok=(201,), retry=False,
                # treq sends Content-Length from the body (GitHub requires it).
                headers={"Content-Type": "application/octet-stream"},
                timeout=max(api.timeout, size / (1 << 20)))
        except GitHubError as e:
            if e.status == 422 and e.has_error_code("already_exists"):
                return None
            raise
        return response.json()

    async def delete_asset(self, asset_id, token):
        try:
            await self.remote.api.request(
                "DELETE", f"{self.remote.path}/releases/assets/{asset_id}", token, ok=(204, 404))
        except BackendError:
            self.needs_cleanup = True  # the next sync tries again

    async def store(self, upload, checked, overwrite=False, principal=None, replacing=None):
        """
        Publish an upload: release, asset, metadata asset, index file.

        @return: L{Stored}; @raise Conflict: as the interface says.
        """
        remote, documents = self.remote, self.documents
        token = getattr(principal, "token", None) or remote.admin_token
        if token is None:
            raise BackendError(f"{remote.describe()}: no token to write with (admin secret)")
        dist = checked.dist
        release = await self.release(dist.project, dist.version, token)
        if replacing is not None and replacing.sha256 == upload.sha256:
            return await self._add_provenance(release, dist, checked, token)
        if replacing is not None:
            # allow_overwrite: the old assets go first (asset names are unique).
            old = documents.entry(dist.project, dist.filename)
            if old:
                await self.delete_assets(old, token)
        asset = await self.upload_asset(
            release, dist.filename, ThreadedFileBody(upload.path, upload.size, remote.run),
            upload.size, token)
        if asset is None:
            return await self._existing(dist, upload, token)
        meta_sha = await remote.run(self.metadata.put, checked.metadata)
        meta_asset = provenance_asset = None
        try:
            meta_asset = await self.upload_asset(
                release, dist.filename + ".metadata", checked.metadata, len(checked.metadata),
                token)
            if checked.provenance is not None:
                # PEP 740's provenance, an asset beside the file, before the
                # index names the file: never listed without it.
                provenance_asset = await self._provenance_asset(release, dist, checked, token)
            entry = {
                "version": dist.version, "kind": dist.kind, "sha256": upload.sha256,
                "size": upload.size, "upload_time": time.time(),
                "requires_python": checked.requires_python, "metadata_sha256": meta_sha,
                "core_metadata": checked.servable, "release_id": release["id"],
                "asset_id": asset["id"],
                "metadata_asset_id": meta_asset["id"] if meta_asset else None,
                "summary": checked.summary,
            }
            if provenance_asset:
                entry["provenance_asset_id"] = provenance_asset["id"]

            def add(doc):
                existing = doc.setdefault("files", {}).get(dist.filename)
                if existing is not None and not overwrite:
                    return "same" if existing.get("sha256") == upload.sha256 else "conflict"
                doc["files"][dist.filename] = entry
                return "stored"

            status = await documents.update(dist.project, token, add)
        except BaseException:
            # Leave nothing half made: without an index entry the asset is
            # junk. But the index write may have landed with its answer lost:
            # then the asset is published, and stays.
            indexed = await self._indexed_asset(dist, asset["id"], token)
            if indexed:
                return Stored("stored", dist_from_entry(dist.filename, entry))
            if indexed is False:
                for made in (asset, meta_asset, provenance_asset):
                    if made:
                        await self.delete_asset(made["id"], token)
            raise
        if status != "stored":
            for made in (asset, meta_asset, provenance_asset):
                if made:
                    await self.delete_asset(made["id"], token)
            if status == "conflict":
                raise Conflict(dist.filename)
            return Stored("same", documents.indexed(dist.project, dist.filename))
        return Stored("stored", dist_from_entry(dist.filename, entry))

    async def _provenance_asset(self, release, dist, checked, token):
        """
        Upload the provenance asset. A leftover of that name (a failed
        upload's, a delete that failed) is in the way: it goes first.
        """
        name = dist.filename + PROVENANCE
        asset = await self.upload_asset(release, name, checked.provenance,
                                        len(checked.provenance), token)
        if asset is None:
            for old in release.get("assets") or ():
                if old.get("name") == name:
                    await self.delete_asset(old["id"], token)
            asset = await self.upload_asset(release, name, checked.provenance,
                                            len(checked.provenance), token)
        if asset is None:
            self.needs_cleanup = True
            raise BackendError(f"{name}: a leftover asset of that name is in the way; "
                               "the cleanup removes it")
        return asset

    async def _add_provenance(self, release, dist, checked, token):
        """The file is there, without the provenance this upload brings: add it."""
        asset = await self._provenance_asset(release, dist, checked, token)

        def add(doc):
            entry = doc.get("files", {}).get(dist.filename)
            if entry is None or entry.get("provenance_asset_id"):
                return None
            entry["provenance_asset_id"] = asset["id"]
            return entry

        entry = await self.documents.update(dist.project, token, add)
        if entry is None:
            await self.delete_asset(asset["id"], token)
            entry = self.documents.entry(dist.project, dist.filename)
            if entry is None:
                raise Conflict(dist.filename)
        return Stored("stored", dist_from_entry(dist.filename, entry))

    async def _indexed_asset(self, dist, asset_id, token):
        """Does the index (fresh from GitHub) name this asset? None: cannot tell."""
        try:
            doc, _ = await self.documents.read(dist.project, token)
        except BackendError:
            self.needs_cleanup = True  # unknown: the cleanup decides later
            return None
        entry = doc.get("files", {}).get(dist.filename) or {}
        return entry.get("asset_id") == asset_id

    async def _existing(self, dist, upload, token):
        """The asset name is taken: same file, other file, or a leftover."""
        doc, _ = await self.documents.read(dist.project, token)
        entry = doc.get("files", {}).get(dist.filename)
        if entry is not None and entry.get("sha256") == upload.sha256:
            return Stored("same", dist_from_entry(dist.filename, entry))
        # Another file, or an upload in progress elsewhere, or a leftover the
        # cleanup will remove: either way not ours to overwrite now.
        self.needs_cleanup = True
        raise Conflict(dist.filename)

    async def delete(self, dist, principal=None):
        """Drop the index entry, then the assets it named."""
        token = getattr(principal, "token", None) or self.remote.admin_token

        def drop(doc):
            return doc.get("files", {}).pop(dist.filename, None)

        entry = await self.documents.update(dist.project, token, drop)
        if entry:
            await self.delete_assets(entry, token)

    async def delete_assets(self, entry, token):
        """The assets an index entry names: the file's, then those beside it."""
        for key in ASSET_KEYS:
            if entry.get(key):
                await self.delete_asset(entry[key], token)
