"""
Getting files out: the short-lived signed URL GitHub gives for an asset
(cached briefly), which a client is redirected to or which ppypi fetches
for it; and core metadata, kept locally, fetched once from its asset when
another instance uploaded the file. No Authorization header ever goes to
the signed URL's host.
"""

import hashlib
from collections import namedtuple

import treq

from ..interface import BackendError, FileMissing, Redirect, Stream
from .api import GitHubError

# Signed download URLs live about five minutes; reuse them for one.
SIGNED_URL_TTL = 60.0

# What signed_url needs of an asset: its file name and asset id.
AssetRef = namedtuple("AssetRef", "filename location")


class Downloads:

    def __init__(self, remote, documents, metadata):
        self.remote = remote
        self.documents = documents
        self.metadata = metadata
        self._signed = {}          # asset id -> (url, expiry)

    async def download(self, dist, start=0, read=0, principal=None):
        """
        A L{Redirect} to the signed URL GitHub gives for the asset
        (downloads: redirect), or a L{Stream} of it through us (downloads:
        proxy). Either way our credentials never go to the signed URL's host.
        """
        url = await self.signed_url(dist, getattr(principal, "token", None))
        if self.remote.settings.downloads == "redirect":
            return Redirect(url)

        async def deliver(write):
            # Fetched only when the body is wanted (not for HEAD).
            response = await self.fetch(url)
            if response.code != 200:
                await response.content()
                raise BackendError(f"GitHub's download answered {response.code}")
            await treq.collect(response, write)

        return Stream(deliver)

    async def signed_url(self, dist, token=None):
        """
        The short-lived URL GitHub gives for the asset (cached briefly).

        @param dist: a L{DistFile} or L{AssetRef} (its filename and location).
        """
        remote = self.remote
        cached = self._signed.get(dist.location)
        now = remote.clock.seconds()
        if cached and cached[1] > now:
            return cached[0]
        try:
            response = await remote.api.request(
                "GET", f"{remote.path}/releases/assets/{dist.location}",
                token or remote.admin_token, accept="application/octet-stream", ok=(302,))
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
        api = self.remote.api
        return await api.http.request(
            "GET", url, headers={"User-Agent": "ppypi"}, allow_redirects=False,
            unbuffered=True, timeout=api.timeout, reactor=self.remote.clock)

    async def _beside(self, dist, key, suffix):
        """(HTTP status, bytes) of the asset an entry names beside a file, or None."""
        entry = self.documents.entry(dist.project, dist.filename)
        if not entry or not entry.get(key):
            return None
        response = await self.fetch(
            await self.signed_url(AssetRef(dist.filename + suffix, str(entry[key]))))
        return response.code, await response.content()

    async def read_provenance(self, dist):
        """The provenance asset beside C{dist} (PEP 740), fetched each time: rarely asked."""
        found = await self._beside(dist, "provenance_asset_id", ".provenance")
        if found is not None and found[0] != 200:
            raise BackendError(f"the provenance of {dist.filename}: HTTP {found[0]}")
        return found and found[1]

    async def read_metadata(self, sha256, dist=None):
        data = await self.remote.run(self.metadata.get, sha256)
        if data is not None or dist is None:
            return data
        # Uploaded through another instance: fetch the metadata asset once.
        found = await self._beside(dist, "metadata_asset_id", ".metadata")
        if found is None:
            return None
        code, data = found
        if code != 200 or hashlib.sha256(data).hexdigest() != sha256:
            return None
        await self.remote.run(self.metadata.put, data)
        return data
