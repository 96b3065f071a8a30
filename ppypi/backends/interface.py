"""
The backend interface: what a repository needs of the storage behind it.

The web layer and L{ppypi.repository} know backends only through this
module: the L{Backend} protocol, the results its methods return, and the
exceptions they raise (mapped to HTTP answers in one place, the web
layer's router). A backend knows nothing of HTTP requests; a new backend
is a new module that implements L{Backend}, registers a
L{ppypi.backends.registry.BackendType}, and passes
C{tests/test_backend_conformance.py} unchanged.

Every method that may wait returns a Deferred or is a coroutine; blocking
work (file IO, hashing) runs in the injected thread pool, never on the
reactor thread.
"""

from collections import namedtuple
from typing import Protocol, runtime_checkable


# -- failures ----------------------------------------------------------------


class BackendError(Exception):
    """
    The backend cannot be reached or failed. Clients get a 503 with
    C{Retry-After} (C{retry_after} seconds when the backend said how long
    to wait), and no name falls through to the extra index meanwhile.
    """

    retry_after = None

    def __init__(self, message="", retry_after=None):
        super().__init__(message)
        if retry_after is not None:
            self.retry_after = retry_after


class RateLimited(BackendError):
    """The backend asked us to wait C{retry_after} seconds (at least 1)."""

    def __init__(self, retry_after, message=None):
        retry_after = max(1, int(retry_after))
        super().__init__(message or f"rate limited: retry in {retry_after}s", retry_after)


class BadUpstream(BackendError):
    """
    The source a backend mirrors sent something other than it promised
    (bytes whose sha256 is not its page's): 502, and nothing was kept.
    """


class ReadOnly(Exception):
    """The repository takes no writes (a mirror): 405, with the reason."""


class Conflict(Exception):
    """A file of that name exists with other content (409)."""


class FileMissing(Exception):
    """The index names a file that the backend no longer has (404)."""


class StorageFull(Exception):
    """The store has no room for an upload; nothing was published (507)."""


# -- results -----------------------------------------------------------------


class Listing:
    """
    What a sync found: every file (L{ppypi.domain.DistFile}) and what it
    cost. C{hashed}: files read to hash them; C{fetched}: index documents
    fetched from a remote store; C{warnings}: (location, problem) pairs,
    already logged by the backend.
    """

    def __init__(self, files, hashed=0, fetched=0, skipped=(), warnings=()):
        self.files = files
        self.hashed = hashed
        self.fetched = fetched
        self.skipped = list(skipped)
        self.warnings = list(warnings)


# The outcome of storing an upload: status "stored" (new) or "same" (the file
# was there with this content), and the file as now indexed.
Stored = namedtuple("Stored", "status dist")

# A download is one of three things, so the web layer never asks what a
# backend can do:
#: a local file object, positioned after C{head}, the bytes already read.
LocalFile = namedtuple("LocalFile", "file head")
#: a URL the client should fetch instead (a signed, short-lived URL).
Redirect = namedtuple("Redirect", "url")


class Stream:
    """
    The file's bytes from elsewhere, passed through: C{await
    stream.deliver(write)} calls C{write(chunk)} for each chunk, in order,
    and raises L{BackendError} if the source fails part way.
    C{stream.close()} gives the source up unread (a HEAD request).

    C{write} may return an awaitable that fires with True when the client
    wants more and False when it has gone: a source that can wait awaits it
    before reading on (L{send}), so a slow client costs a chunk of memory,
    not the file.
    """

    def __init__(self, deliver, close=lambda: None):
        self._deliver = deliver
        self._close = close

    async def deliver(self, write):
        await self._deliver(write)

    def close(self):
        self._close()


async def send(write, chunk):
    """
    Give C{chunk} to a L{Stream}'s C{write}, and wait until the client
    wants more. Returns False when the client has gone (stop reading).
    """
    more = write(chunk)
    if more is None:
        return True
    return bool(await more)


# PEP 792: the statuses a project may have ("active" is the default).
STATUSES = ("active", "archived", "deprecated", "quarantined")


def valid_status(entry):
    """Is C{entry} a kept status: {"status": one of STATUSES, "reason": str}?"""
    return (isinstance(entry, dict) and entry.get("status") in STATUSES
            and isinstance(entry.get("reason", ""), str))


def put_status(statuses, project, status, reason):
    """Set one status in a {project: status} record; a plain "active" is left out."""
    if status == "active" and not reason:
        statuses.pop(project, None)
    else:
        statuses[project] = {"status": status, "reason": reason or ""}


def doc_statuses(docs):
    """The statuses of per-project documents ({project: {"doc": {..., "status"}}})."""
    return {project: dict(held["doc"]["status"]) for project, held in (docs or {}).items()
            if valid_status(held["doc"].get("status"))}


def doc_status_change(project, status, reason):
    """A change of a project's document that sets its status (L{put_status})."""

    def change(doc):
        kept = {}
        put_status(kept, project, status, reason)
        if kept:
            doc["status"] = kept[project]
        else:
            doc.pop("status", None)

    return change


# -- the protocol ------------------------------------------------------------


@runtime_checkable
class Backend(Protocol):
    """
    Where one repository's files and state live.

    The repository calls L{list_files} (each sync begins with it) before
    L{store}, L{delete}, L{download}, L{read_metadata}, L{load_yanks} and
    L{set_yank}: a backend may answer these from what its last listing
    read. L{load_held} is called before the first listing. A method that
    says nothing of errors raises L{BackendError} when the store fails.

    @ivar name: the repository's name (for logs).
    @ivar incoming_dir: a folder where the web layer writes uploads as they
        arrive, before L{store}; on the same filesystem as the files where
        that makes storing a rename.
    """

    name: str
    incoming_dir: str

    def prepare(self) -> int:
        """
        Start-up, blocking: create what is missing and delete what an
        interrupted upload left behind. Return how many leftovers that was.
        """

    def describe(self) -> str:
        """Where the files are, for people (logs, /health): no secret."""

    def status(self) -> dict:
        """Backend-specific fields for /health (e.g. C{hashed_since_start})."""

    # Optional: async def cached_listing(self) -> list | None: the files of
    # the last listing, from the backend's own persisted cache, without
    # reaching the store; a repository serves them at start while its first
    # listing runs (a restart at 1,000,000 files). None: nothing usable.

    async def list_files(self) -> Listing:
        """
        Every file the repository holds now. Called by each sync; cheap
        when nothing changed.

        @raise BackendError: the store cannot be listed.
        """

    async def store(self, upload, checked, overwrite=False, principal=None,
                    replacing=None) -> Stored:
        """
        Publish an upload that passed its checks: it becomes listable whole,
        or not at all (a crash at any point leaves no partial file listed).

        @param upload: the L{ppypi.domain.UploadedFile} in L{incoming_dir}.
        @param checked: its L{ppypi.domain.CheckedUpload}. Its C{provenance}
            (PEP 740, JSON bytes), when not None, is kept beside the file and
            written before it, so the file is never listed without it; the
            stored L{DistFile} says C{provenance=True}. A file stored again
            without one loses the old one.
        @param overwrite: replace a file of the same name (allow_overwrite).
        @param principal: who uploads (a backend may write as them).
        @param replacing: the L{DistFile} being replaced, when overwriting.
        @return: L{Stored}; its C{dist.upload_time} is wall-clock seconds
            (C{time.time()}), not the injected clock.
        @raise Conflict: a file of that name exists with other content.
        @raise StorageFull: no room; nothing was published.
        @raise BackendError: the store failed; nothing was published.
        @raise OSError: the server's own disk failed (the incoming folder).
        """

    async def delete(self, dist, principal=None) -> None:
        """
        Delete one file (already gone: no error).

        @raise BackendError: the store failed (the file may still be there).
        """

    async def read_metadata(self, sha256, dist=None) -> bytes | None:
        """
        The core metadata bytes whose sha256 is C{sha256} (of C{dist}, when
        given, so that a backend may fetch or extract them again), or None.
        """

    async def download(self, dist, start=0, read=0, principal=None):
        """
        How to give the client a file: a L{LocalFile} (opened at C{start},
        with up to C{read} bytes already read, so a small file costs one
        trip to the thread pool), a L{Redirect} (the whole file's URL: the
        client sends its Range there), or a L{Stream} (the whole file;
        ranges are not offered). C{start} and C{read} are for L{LocalFile}
        only.

        @raise FileMissing: the file is not there any more.
        """

    async def load_yanks(self) -> dict:
        """Every yank: {project: {version: reason}} (PEP 592); a project
        with no yanked version is left out."""

    async def set_yank(self, project, version, reason, principal=None) -> dict:
        """Yank a release (C{reason}: a string, maybe empty) or unyank it
        (None); return every yank as L{load_yanks} does."""

    async def read_provenance(self, dist) -> bytes | None:
        """The PEP 740 provenance object kept beside C{dist}, or None."""

    async def load_statuses(self) -> dict:
        """
        Every project status (PEP 792): {project: {"status": s, "reason":
        r}}; a project that is "active" with no reason is left out. Kept
        where the yanks are (another server sharing the store may change it).
        """

    async def set_status(self, project, status, reason, principal=None) -> dict:
        """Set a project's status (one of L{STATUSES}) and
        reason (a string, maybe empty) (L{put_status}); return every status as
        L{load_statuses} does."""

    async def load_held(self) -> set:
        """
        Every project name the repository has ever held: such a name is
        never redirected to the extra index (dependency confusion). Kept in
        the server's state folder or in the store: a restart on the same
        ROOT sees them; a store shared by several servers keeps them in the
        store, so that every server sees them.
        """

    async def save_held(self, names) -> None:
        """Keep C{names} (all of them, a superset of what was saved)."""

    async def load_tokens(self) -> dict:
        """
        The repository's upload tokens (L{ppypi.tokens}): {id: record}.
        Kept where the store keeps state every server sharing it sees.
        """

    async def update_tokens(self, change):
        """
        Read-modify-write the tokens atomically against other writers (on
        this server and on others sharing the store): C{change(records)}
        edits the dict in place (it may run more than once, and may raise
        to give up); return what it returned.
        """

    async def permissions(self, token):
        """
        What the store's own access control grants C{token}: a frozenset of
        "read" and "write", or None when it does not know the token. Only
        for repositories whose read or write is the store's own mode (e.g.
        C{github}); other backends return None.
        """


@runtime_checkable
class Mirror(Protocol):
    """
    A backend that mirrors another index (a proxy): besides L{Backend}, it
    fetches a project's page when a client asks for it. Its L{Backend.store}
    and L{Backend.set_yank} raise L{ReadOnly}; its listing is what it has
    cached.

    @ivar page_ttl: seconds a page is served before it is fetched again.
    @ivar counts: counters for /metrics: page_hits (the web layer counts
        those), page_fetches, page_revalidated, file_hits, file_fetches,
        upstream_requests, upstream_errors, stale_served; its C{status()}
        has C{cache_bytes}.
    """

    page_ttl: float
    counts: dict

    async def fetch_project(self, project):
        """
        The project as the source has it now: an object with C{files}
        (L{ppypi.domain.DistFile}s), C{yanks} ({version: reason}),
        C{checked_at} (wall clock) and C{stale} (None, or why the source
        could not be asked and this is the last answer it gave); None when
        the source has no such project.

        @raise BackendError: the source failed and nothing is cached.
        """

    async def forget_project(self, project) -> bool:
        """Drop a project's cached page; True if there was one."""
