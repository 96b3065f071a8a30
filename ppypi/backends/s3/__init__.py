"""
The S3 backend: distribution files in any S3-compatible object store (AWS,
MinIO, Ceph RGW, R2, GCS interoperability), shared by any number of
servers. Every state users see lives in the bucket; ROOT holds caches.

Layout under the prefix:

- C{files/PROJECT/SHA256/FILENAME}: each file, content-addressed, written
  once with C{If-None-Match: *} (so a write never replaces anything, and
  two servers storing the same bytes agree without asking), and
  C{files/PROJECT/SHA256/FILENAME.DIGEST.provenance} beside it when its
  attestations were verified (PEP 740);
- C{metadata/SHA256.metadata}: PEP 658 core metadata, content-addressed;
- C{index/PROJECT.json}, C{index.json}, C{names-held.json}: the index (see
  L{documents}; a project's document holds its yanks and status too),
  changed only by compare-and-swap.

A file is published when its project's document names it: a server that
dies before that leaves an object no document names, which a later sync
deletes after L{CLEANUP_GRACE} (and multipart uploads it began are
aborted). An upload costs six requests whatever the bucket holds (the file,
its metadata, the project's document read and written, the root read and
written); an idle sync one (a 304).

botocore, not treq, speaks to the store: AWS's own client does SigV4, the
whole credential chain (environment, shared files, container and instance
roles, with refreshes), retries with backoff, and presigning; it is
synchronous, so every call runs in the thread pool (L{client}).
"""

import hashlib
import os
import re
import time
from types import SimpleNamespace

from twisted.logger import Logger

from ..interface import (BackendError, Conflict, FileMissing, Listing, RateLimited, Redirect,
                         Stored, Stream, send)
from ..local import MetadataStore, empty_incoming
from ..registry import BackendType, register
from .client import PreconditionFailed, StoreClient
from .documents import IndexDocuments, dist_from_entry, metadata_name

#: A file's PEP 740 provenance object is kept beside it, at KEY.provenance.
PROVENANCE = ".provenance"
MEDIA_TYPE = "application/vnd.pypi.integrity.v1+json"

# Objects no index names are deleted once older than this (another server
# may still be indexing them), at most every CLEANUP_INTERVAL or after an
# upload failed.
CLEANUP_GRACE = 600.0
CLEANUP_INTERVAL = 6 * 3600.0
# Files never change under a key (content-addressed): caches may keep them.
FILE_CACHE_CONTROL = "public, max-age=31536000, immutable"
CHUNK = 1 << 16


def file_name(project, sha256, filename):
    return f"files/{project}/{sha256}/{filename}"


class S3Backend:
    """
    @param store: a L{StoreClient} (blocking; run through C{run_in_thread}).
    @param writable: whether this server may write (cleanup needs it).
    """

    log = Logger()

    def __init__(self, name, store, state_dir, run_in_thread, clock, downloads="redirect",
                 writable=True, description=""):
        self.name = name
        self.store_client = store
        self.state_dir = state_dir
        self.incoming_dir = os.path.join(state_dir, "incoming")
        self._run = run_in_thread
        self._clock = clock
        self.downloads = downloads
        self.writable = writable
        self._description = description
        self.metadata = MetadataStore(os.path.join(state_dir, "metadata"))
        self.documents = IndexDocuments(store, run_in_thread, clock, self.log, name, state_dir,
                                        description)
        self.needs_cleanup = False
        self._last_cleanup = clock.seconds() - CLEANUP_INTERVAL + CLEANUP_GRACE
        self._urls = {}  # object name -> (presigned URL, when made)
        self._uploads_seen = {}  # unfinished multipart upload id -> first seen (wall clock)

    def describe(self):
        return self._description

    def status(self):
        calls = dict(self.store_client.calls)
        return {"store_requests": sum(calls.values()), "store_requests_by_operation": calls}

    async def permissions(self, token):
        return None  # the store's keys are the server's, never a user's

    def prepare(self):
        """Start-up (blocking): the folders, and uploads a crash interrupted."""
        return empty_incoming(self.incoming_dir)

    # -- the index

    async def list_files(self):
        """Sync: one conditional GET when nothing changed anywhere."""
        fetched = await self.documents.sync()
        files = self.documents.files()
        await self._maybe_cleanup()
        return Listing(files, fetched=fetched)

    async def load_yanks(self):
        return self.documents.yanks()

    async def set_yank(self, project, version, reason, principal=None):
        return await self.documents.set_yank(project, version, reason)

    async def load_statuses(self):
        return self.documents.statuses()

    async def set_status(self, project, status, reason, principal=None):
        return await self.documents.set_status(project, status, reason)

    async def load_held(self):
        return await self.documents.load_held()

    async def save_held(self, names):
        await self.documents.save_held(names)

    async def load_tokens(self):
        return await self.documents.load_tokens()

    async def update_tokens(self, change):
        return await self.documents.update_tokens(change)

    # -- files

    async def store(self, upload, checked, overwrite=False, principal=None, replacing=None):
        dist_name = checked.dist
        project, filename = dist_name.project, dist_name.filename
        known = self.documents.entry(project, filename)
        if known is not None and not overwrite:
            # What this server knows already decides, without a request; the
            # compare-and-swap below decides for what it has not seen yet.
            if known["sha256"] == upload.sha256:
                return Stored("same", dist_from_entry(filename, known))
            raise Conflict(filename)
        name = file_name(project, upload.sha256, filename)
        try:
            await self._run(self.store_client.put_file, name, upload.path, upload.size,
                            "application/octet-stream", FILE_CACHE_CONTROL)
            meta_sha = await self._run(self.metadata.put, checked.metadata)
            try:
                await self._run(self.store_client.put, metadata_name(meta_sha),
                                checked.metadata, if_none_match=True,
                                content_type="text/plain; charset=utf-8",
                                cache_control=FILE_CACHE_CONTROL)
            except PreconditionFailed:
                pass  # the same metadata, stored for another file
            entry = {"sha256": upload.sha256, "size": upload.size, "upload_time": time.time(),
                     "requires_python": checked.requires_python, "key": name,
                     "metadata_sha256": meta_sha, "core_metadata": bool(checked.servable),
                     "summary": checked.summary}
            if checked.provenance is not None:
                # PEP 740: beside the file, before the index names it, named
                # by its own digest and written once: an upload that turns
                # out to be "same" leaves the kept one as it was (and its
                # own to the cleanup).
                digest = hashlib.sha256(checked.provenance).hexdigest()[:16]
                entry["provenance"] = f"{name}.{digest}{PROVENANCE}"
                try:
                    await self._run(self.store_client.put, entry["provenance"],
                                    checked.provenance, if_none_match=True,
                                    content_type=MEDIA_TYPE, cache_control=FILE_CACHE_CONTROL)
                except PreconditionFailed:
                    pass  # these very bytes, there already

            def change(doc):
                files = doc.setdefault("files", {})
                held = files.get(filename)
                if held is not None:
                    if held.get("sha256") == upload.sha256:
                        if held.get("provenance") or not entry.get("provenance"):
                            return "same", held
                    elif not overwrite:
                        return "conflict", held
                files[filename] = entry
                return "stored", held

            status, held = await self.documents.update(project, change)
        except BaseException:
            # An object may be left that no index names: the next sync's cleanup.
            self.needs_cleanup = True
            raise
        if status == "conflict":
            self.needs_cleanup = True
            raise Conflict(filename)
        if status == "same":
            return Stored("same", dist_from_entry(filename, held))
        if held is not None:
            await self._forget_entry(held, keep=entry)
        return Stored("stored", dist_from_entry(filename, entry))

    async def _forget_entry(self, entry, keep=None):
        """The objects of a file's old entry that its new one (C{keep}) no longer names."""
        kept = {keep.get("key"), keep.get("provenance")} if keep else set()
        for key in (entry.get("key"), entry.get("provenance")):
            if key and key not in kept:
                await self._forget(key)

    async def _forget(self, name):
        """Delete an object the index no longer names (failing: the cleanup's)."""
        try:
            await self._run(self.store_client.delete, name)
        except BackendError:
            self.needs_cleanup = True

    async def delete(self, dist, principal=None):
        def change(doc):
            return doc.get("files", {}).pop(dist.filename, None)

        removed = await self.documents.update(dist.project, change)
        if removed is not None:
            await self._forget_entry(removed)

    async def download(self, dist, start=0, read=0, principal=None):
        entry = self.documents.entry(dist.project, dist.filename)
        if entry is None or entry.get("sha256") != dist.sha256:
            raise FileMissing(dist.filename)
        name = entry["key"]
        if self.downloads == "redirect":
            if self.store_client.failing is not None:
                # Down is not gone, and a client sent to a dead store only
                # fails later: a 503 now, with the store's reason.
                failing = self.store_client.failing
                raise RateLimited(failing.retry_after, str(failing)) \
                    if isinstance(failing, RateLimited) else BackendError(str(failing))
            return Redirect(await self._presigned(name))
        body = await self._run(self.store_client.open, name)
        if body is None:
            raise FileMissing(dist.filename)

        async def deliver(write):
            try:
                while True:
                    try:
                        chunk = await self._run(body.read, CHUNK)
                    except Exception as e:
                        raise BackendError(f"{name}: the store's answer broke off ({e})") \
                            from None
                    if not chunk or not await send(write, chunk):
                        return
            finally:
                body.close()

        return Stream(deliver, body.close)

    async def _presigned(self, name):
        # Signing is local, but the client is made on first use (slow): a
        # URL is kept for a minute, which also spares the thread pool.
        now = self._clock.seconds()
        cached = self._urls.get(name)
        if cached is not None and now - cached[1] < 60:
            return cached[0]
        url = await self._run(self.store_client.presign, name)
        if len(self._urls) > 10000:
            self._urls.clear()
        self._urls[name] = (url, now)
        return url

    async def read_provenance(self, dist):
        entry = self.documents.entry(dist.project, dist.filename)
        if entry is None or entry.get("sha256") != dist.sha256 or not entry.get("provenance"):
            return None
        found = await self._run(self.store_client.get, entry["provenance"])
        return found[0] if found is not None else None

    async def read_metadata(self, sha256, dist=None):
        data = await self._run(self.metadata.get, sha256)
        if data is not None:
            return data
        # Uploaded through another server: fetch it once from the bucket.
        found = await self._run(self.store_client.get, metadata_name(sha256))
        if found is None or hashlib.sha256(found[0]).hexdigest() != sha256:
            return None
        await self._run(self.metadata.put, found[0])
        return found[0]

    # -- what failed uploads leave

    async def _maybe_cleanup(self):
        now = self._clock.seconds()
        if not self.writable:
            return
        if not (self.needs_cleanup or now - self._last_cleanup > CLEANUP_INTERVAL):
            return
        try:
            removed = await self.cleanup()
        except BackendError:
            self.log.failure("repository {repo}: cleanup of leftover objects failed",
                             repo=self.name)
            return
        self.needs_cleanup = False
        self._last_cleanup = now
        if removed:
            self.log.info("repository {repo}: removed {count} objects and uploads no index "
                          "names (left by failed uploads)", repo=self.name, count=removed)

    async def cleanup(self, grace=CLEANUP_GRACE):
        """
        Delete objects under files/ and metadata/ that no index document
        names and that are older than C{grace} seconds (another server may
        be indexing a younger one), and abort multipart uploads this server
        saw unfinished longer ago. Returns how many.
        """
        await self.documents.reconcile()
        named = self.documents.keys()
        cutoff = time.time() - grace
        removed = 0
        for under in ("files/", "metadata/"):
            for name, _, modified, _ in await self._run(self.store_client.list, under):
                if name not in named and modified < cutoff:
                    await self._run(self.store_client.delete, name)
                    removed += 1
        # An upload counts from when this server first saw it unfinished:
        # not every store's "Initiated" can be trusted (moto's is a fixed
        # date in 2010), and a real one's is never later.
        now = time.time()
        seen = {}
        for key, upload_id, _ in await self._run(self.store_client.unfinished_uploads):
            seen[upload_id] = first = self._uploads_seen.get(upload_id, now)
            if first < cutoff:
                await self._run(self.store_client.abort, key, upload_id)
                del seen[upload_id]
                removed += 1
        self._uploads_seen = seen
        return removed


# -- the kind of repository ---------------------------------------------------

DOWNLOAD_MODES = ("redirect", "proxy")
ADDRESSING = ("path", "virtual", "auto")
# S3's bucket names (and what MinIO, R2 and Ceph accept).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-_]{1,254}")


def _settings(checker, spec, key, root=None):
    out = SimpleNamespace()
    if "bucket" not in spec:
        checker.fail(f"{key}.bucket", "is required for an s3 repository")
    out.bucket = checker.string(spec["bucket"], f"{key}.bucket")
    if not _BUCKET.fullmatch(out.bucket):
        checker.fail(f"{key}.bucket", f"{out.bucket!r} is not a bucket name")
    prefix = spec.get("prefix")
    prefix = "" if prefix is None else checker.string(prefix, f"{key}.prefix").lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if "//" in prefix or ".." in prefix.split("/"):
        checker.fail(f"{key}.prefix", f"{prefix!r} is not a key prefix")
    out.prefix = prefix
    endpoint = spec.get("endpoint_url")
    if endpoint is not None:
        endpoint = checker.string(endpoint, f"{key}.endpoint_url").rstrip("/")
        if not endpoint.startswith(("https://", "http://")):
            checker.fail(f"{key}.endpoint_url", "must be an http(s) URL")
    out.endpoint_url = endpoint
    region = spec.get("region")
    out.region = checker.string(region, f"{key}.region") if region is not None else None
    style = spec.get("addressing_style")
    if style is not None and style not in ADDRESSING:
        checker.fail(f"{key}.addressing_style", f"must be path or virtual, not {style!r}")
    out.addressing_style = style
    downloads = spec.get("downloads", "redirect")
    if downloads not in DOWNLOAD_MODES:
        checker.fail(f"{key}.downloads", f"must be redirect or proxy, not {downloads!r}")
    out.downloads = downloads
    return out


def describe(settings):
    where = settings.endpoint_url or "AWS"
    return f"s3://{settings.bucket}/{settings.prefix} at {where}"


def _create(context):
    rc = context.config
    s = rc.settings
    credentials = rc.admin_secret.value if rc.admin_secret is not None else None
    if credentials is not None and not isinstance(credentials, dict):
        from ...validate import ConfigError
        raise ConfigError("--admin-secret", rc.name,
                          "an s3 repository takes access_key_id and secret_access_key")
    store = StoreClient(s.bucket, s.prefix, s.endpoint_url, s.region, s.addressing_style,
                        credentials, on_retry=context.on_retry)
    return S3Backend(rc.name, store, context.state_dir, context.run_in_thread, context.clock,
                     s.downloads, writable=bool(rc.write), description=describe(s))


S3 = register(BackendType(
    "s3", keys={"bucket", "prefix", "endpoint_url", "region", "addressing_style", "downloads"},
    settings=_settings, factory=_create,
    secret_keys={"access_key_id", "secret_access_key", "session_token"},
    secret_required={"access_key_id", "secret_access_key"}))
