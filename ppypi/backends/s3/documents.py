"""
The index, as ppypi keeps it in the bucket:

- C{index/PROJECT.json}, one document per project: its files (sha256, size,
  upload time, Requires-Python, metadata hash, object key) and yanks, with a
  C{serial} that each write increments;
- C{index.json}, the root: every project's latest serial. Each change to a
  project's document raises its serial here too, so the root changes
  whenever any project does, and an idle sync is one conditional GET of it
  (a 304);
- C{names-held.json}: every project name ever held (dependency confusion).

Every write is a compare-and-swap: C{If-Match} on the ETag read (or
C{If-None-Match: *} for a new object), and on a 412 (another server wrote
first) read again and redo after a random pause that grows. Serials only
grow (the root keeps the highest it was told), so a slow writer never takes
a project back.

A server that dies between writing a project's document and the root
leaves the root behind; the next reconciliation (at start, then every
L{RECONCILE_INTERVAL}) lists C{index/} and repairs it.
"""

import json
import os
import random

from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.task import deferLater

from ...domain import DistFile
from ...names import InvalidFilename, parse_filename
from ..interface import BackendError, doc_status_change, doc_statuses
from ..local import load_cache, save_cache
from .client import NotModified, PreconditionFailed

INDEX_DIR = "index/"
ROOT = "index.json"
HELD = "names-held.json"
TOKENS = "tokens.json"
# The root's entry for tokens.json's serial: a sync learns from the root
# alone whether the tokens changed. "~" begins no project name.
TOKENS_KEY = "~tokens"
DOC_FORMAT = 1
# Tries at a compare-and-swap before giving up, and the pause between them.
MAX_RETRIES = 16
RETRY_PAUSE = 0.05
RETRY_PAUSE_MAX = 2.0
# A listing of index/ checks the root this often (and at start).
RECONCILE_INTERVAL = 600.0
# Documents fetched at once by a sync (a fresh server fetches them all).
FETCH_CONCURRENCY = 8


def doc_name(project):
    return f"{INDEX_DIR}{project}.json"


def encode(doc):
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def dist_from_entry(filename, entry):
    dist = parse_filename(filename)
    return DistFile(
        filename, dist.project, dist.version, dist.kind, entry["sha256"], entry["size"],
        int(entry["upload_time"] * 1e9), entry.get("requires_python"), entry["key"],
        entry.get("metadata_sha256"), bool(entry.get("core_metadata")), entry["upload_time"],
        entry.get("summary"), bool(entry.get("provenance")))


def new_doc(project):
    return {"format": DOC_FORMAT, "project": project, "serial": 0, "files": {}, "yanked": {}}


class IndexDocuments:
    """
    @ivar docs: project -> {"etag", "serial", "doc"}; None until the first
        sync loaded the local copy.
    @ivar fetched: documents fetched by the last sync.
    """

    def __init__(self, store, run, clock, log, name, state_dir, source):
        self.store = store
        self.run = run
        self.clock = clock
        self.log = log
        self.name = name
        self.state_dir = state_dir
        self.source = source
        self.cache_path = os.path.join(state_dir, "s3-index.json")
        self.root_etag = None
        self.root = {}
        self.docs = None
        self._last_reconcile = None
        self._tokens = None     # (serial, records) of tokens.json, last read

    # -- the local copy (blocking)

    def _load_cache(self):
        data, problem = load_cache(self.cache_path, self.source)
        if problem:
            self.log.warn("repository {repo}: {path} {problem}; fetching the index again",
                          repo=self.name, path=self.cache_path, problem=problem)
        try:
            return (data["root_etag"], data["root"], data["docs"]) if data else (None, {}, {})
        except (KeyError, TypeError):
            return None, {}, {}

    def _save_cache(self):
        save_cache(self.cache_path, self.source, sync=False, root_etag=self.root_etag,
                   root=self.root, docs=self.docs)

    # -- what the index holds

    def files(self):
        files = []
        for project, held in self.docs.items():
            for filename, entry in held["doc"].get("files", {}).items():
                try:
                    files.append(dist_from_entry(filename, entry))
                except (InvalidFilename, KeyError, TypeError, ValueError):
                    self.log.warn("repository {repo}: skipped a bad entry {filename} in {path}",
                                  repo=self.name, filename=filename, path=doc_name(project))
        return files

    def entry(self, project, filename):
        held = (self.docs or {}).get(project)
        return held and held["doc"].get("files", {}).get(filename)

    def yanks(self):
        if self.docs is None:
            return {}
        return {project: dict(held["doc"].get("yanked", {}))
                for project, held in self.docs.items() if held["doc"].get("yanked")}

    def keys(self):
        """Every object key the index names (files, their provenance and metadata)."""
        named = set()
        for held in (self.docs or {}).values():
            for entry in held["doc"].get("files", {}).values():
                named.add(entry.get("key"))
                if entry.get("provenance"):
                    named.add(entry["provenance"])
                if entry.get("metadata_sha256"):
                    named.add(metadata_name(entry["metadata_sha256"]))
        return named

    # -- reading

    async def _get(self, name, etag=None):
        return await self.run(self.store.get, name, etag)

    async def _fetch_doc(self, project):
        found = await self._get(doc_name(project))
        if found is None:
            return None
        data, etag = found
        try:
            doc = json.loads(data)
            serial = int(doc.get("serial", 0))
            if not isinstance(doc.get("files", {}), dict):
                raise ValueError("files is not a mapping")
        except (ValueError, TypeError, AttributeError) as e:
            self.log.warn("repository {repo}: {path} is not an index document ({e}); skipped",
                          repo=self.name, path=doc_name(project), e=e)
            return None
        return {"etag": etag, "serial": serial, "doc": doc}

    async def _fetch_docs(self, projects):
        """Several documents, FETCH_CONCURRENCY at a time (a fresh server's first sync)."""
        limit = DeferredSemaphore(FETCH_CONCURRENCY)
        return await gatherResults(
            [limit.run(lambda p=p: Deferred.fromCoroutine(self._fetch_doc(p)))
             for p in projects], consumeErrors=True).addErrback(_first_error)

    async def sync(self):
        """
        Bring the local copy in step: one conditional GET of the root when
        nothing changed. Returns how many documents were fetched.
        """
        if self.docs is None:
            self.root_etag, self.root, self.docs = await self.run(self._load_cache)
        fetched = 0
        changed = False
        try:
            found = await self._get(ROOT, self.root_etag)
        except NotModified:
            found = False
        if found is None:
            # No root: an empty store (or one whose first writer died early).
            changed = bool(self.root) or self.root_etag is not None
            self.root, self.root_etag = {}, None
        elif found is not False:
            data, self.root_etag = found
            self.root = _projects(data)
            changed = True
        stale = [project for project, serial in self.root.items()
                 if not project.startswith("~") and
                 (project not in self.docs or self.docs[project]["serial"] < serial)]
        for project, got in zip(stale, await self._fetch_docs(stale)):
            fetched += 1
            if got is not None:
                self.docs[project] = got
                changed = True
        now = self.clock.seconds()
        if self._last_reconcile is None or now - self._last_reconcile >= RECONCILE_INTERVAL:
            fetched += await self.reconcile()
            self._last_reconcile = now
            changed = True
        if changed:
            await self.run(self._save_cache)
        return fetched

    async def reconcile(self):
        """
        List C{index/} and fetch every document the local copy does not
        have as it is (a writer died before raising the root, or wrote the
        documents by hand). Returns how many were fetched.
        """
        listed = await self.run(self.store.list, INDEX_DIR)
        fetched = 0
        stale = {}
        seen = set()
        differing = []
        for name, etag, _, _ in listed:
            if not name.endswith(".json"):
                continue
            project = name[len(INDEX_DIR):-len(".json")]
            seen.add(project)
            held = self.docs.get(project)
            if held is None or held["etag"] != etag:
                differing.append(project)
        for project, got in zip(differing, await self._fetch_docs(differing)):
            fetched += 1
            if got is None:
                continue
            self.docs[project] = got
            if self.root.get(project, -1) < got["serial"]:
                stale[project] = got["serial"]
        for project in set(self.docs) - seen:
            del self.docs[project]
        if stale:
            self.log.info("repository {repo}: the root index missed {count} changes; repairing",
                          repo=self.name, count=len(stale))
            self.root.update(stale)
            try:
                await self.raise_root(stale)
            except (BackendError, PreconditionFailed):
                # Read-only credentials, or the store failing: the others
                # repair it, and this server serves what it fetched.
                self.log.info("repository {repo}: could not repair the root index",
                              repo=self.name)
        return fetched

    # -- writing

    async def _pause(self, attempt):
        pause = min(RETRY_PAUSE_MAX, RETRY_PAUSE * 2 ** attempt)
        await deferLater(self.clock, random.uniform(0, pause), lambda: None)

    async def update(self, project, change):
        """
        Read-modify-write a project's document with If-Match on its ETag;
        when another writer came first, read again and redo. Then raise the
        project's serial in the root.

        @param change: C{f(doc) -> result}; it edits C{doc} in place, or
            returns without editing (then nothing is written).
        @return: what C{change} returned.
        """
        name = doc_name(project)
        for attempt in range(MAX_RETRIES):
            if attempt:
                await self._pause(attempt)
            found = await self._get(name)
            if found is None:
                doc, etag = new_doc(project), None
            else:
                doc, etag = json.loads(found[0]), found[1]
            before = encode(doc)
            result = change(doc)
            if encode(doc) == before:
                return result
            doc["serial"] = int(doc.get("serial", 0)) + 1
            try:
                new_etag = await self.run(self.store.put, name, encode(doc),
                                          if_none_match=etag is None, if_match=etag)
            except PreconditionFailed:
                self.log.debug("repository {repo}: {path} changed under us; retrying",
                               repo=self.name, path=name)
                continue
            if self.docs is not None:
                self.docs[project] = {"etag": new_etag, "serial": doc["serial"], "doc": doc}
            await self.raise_root({project: doc["serial"]})
            return result
        raise BackendError(f"{name}: still conflicting after {MAX_RETRIES} tries")

    async def raise_root(self, serials):
        """Raise projects' serials in the root to at least C{serials}."""
        for attempt in range(MAX_RETRIES):
            if attempt:
                await self._pause(attempt)
            found = await self._get(ROOT)
            root, etag = (_projects(found[0]), found[1]) if found else ({}, None)
            if all(root.get(p, -1) >= s for p, s in serials.items()):
                return
            for project, serial in serials.items():
                root[project] = max(serial, root.get(project, -1))
            try:
                await self.run(self.store.put, ROOT,
                               encode({"format": DOC_FORMAT, "projects": root}),
                               if_none_match=etag is None, if_match=etag)
            except PreconditionFailed:
                continue
            return
        raise BackendError(f"{ROOT}: still conflicting after {MAX_RETRIES} tries")

    async def set_yank(self, project, version, reason):
        def change(doc):
            yanked = doc.setdefault("yanked", {})
            if reason is None:
                yanked.pop(version, None)
            else:
                yanked[version] = reason

        await self.update(project, change)
        return self.yanks()

    def statuses(self):
        return doc_statuses(self.docs)

    async def set_status(self, project, status, reason):
        await self.update(project, doc_status_change(project, status, reason))
        return self.statuses()

    # -- upload tokens

    async def load_tokens(self):
        """
        The token records. After a sync, from memory while the root says
        tokens.json did not change (an idle sync stays one request).
        """
        cached = self._tokens
        if cached is not None and self.docs is not None and \
                self.root.get(TOKENS_KEY, 0) == cached[0]:
            return json.loads(json.dumps(cached[1]))
        serial, records, _ = await self._read_tokens()
        self._tokens = (serial, records)
        return json.loads(json.dumps(records))

    async def _read_tokens(self):
        """(serial, records, etag) of tokens.json (0, {}, None: none yet)."""
        found = await self._get(TOKENS)
        if found is None:
            return 0, {}, None
        try:
            doc = json.loads(found[0])
            records = doc["records"]
            if not isinstance(records, dict):
                raise ValueError("not a mapping")
            return int(doc.get("serial", 0)), records, found[1]
        except (ValueError, TypeError, KeyError) as e:
            raise BackendError(f"{TOKENS} unreadable ({e})") from None

    async def update_tokens(self, change):
        """Read-modify-write C{tokens.json} by compare-and-swap, then raise the root."""
        for attempt in range(MAX_RETRIES):
            if attempt:
                await self._pause(attempt)
            serial, records, etag = await self._read_tokens()
            result = change(records)
            serial += 1
            try:
                await self.run(self.store.put, TOKENS,
                               encode({"serial": serial, "records": records}),
                               if_none_match=etag is None, if_match=etag)
            except PreconditionFailed:
                continue
            self._tokens = (serial, records)
            await self.raise_root({TOKENS_KEY: serial})
            return result
        raise BackendError(f"{TOKENS}: still conflicting after {MAX_RETRIES} tries")

    # -- names held

    async def load_held(self):
        found = await self._get(HELD)
        names = set()
        if found is not None:
            try:
                names = {n for n in json.loads(found[0]) if isinstance(n, str)}
            except (ValueError, TypeError) as e:
                raise BackendError(f"{HELD} unreadable ({e})") from None
        root = await self._get(ROOT)
        if root is not None:
            # Every project with a document was held, even with no file left.
            names |= {p for p in _projects(root[0]) if not p.startswith("~")}
        return names

    async def save_held(self, names):
        for attempt in range(MAX_RETRIES):
            if attempt:
                await self._pause(attempt)
            found = await self._get(HELD)
            held, etag = set(), None
            if found is not None:
                try:
                    held = {n for n in json.loads(found[0]) if isinstance(n, str)}
                except (ValueError, TypeError):
                    held = set()
                etag = found[1]
            if set(names) <= held:
                return
            data = json.dumps(sorted(held | set(names))).encode()
            try:
                await self.run(self.store.put, HELD, data, if_none_match=etag is None,
                               if_match=etag)
            except PreconditionFailed:
                continue
            return
        raise BackendError(f"{HELD}: still conflicting after {MAX_RETRIES} tries")


def _first_error(failure):
    """gatherResults' FirstError, unwrapped: the backend's own failure."""
    from twisted.internet.defer import FirstError
    failure.trap(FirstError)
    failure.value.subFailure.raiseException()


def metadata_name(sha256):
    return f"metadata/{sha256}.metadata"


def _projects(data):
    try:
        projects = json.loads(data).get("projects", {})
        return {p: int(s) for p, s in projects.items() if isinstance(p, str)}
    except (ValueError, TypeError, AttributeError):
        raise BackendError(f"{ROOT} is not a root index") from None
