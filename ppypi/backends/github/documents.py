"""
The index, as ppypi keeps it on BRANCH: C{index/PROJECT.json}, one document
per project (its files, yanks and status). Read by a sync (one conditional request
for the branch's tree, then the blobs that changed), kept in a local copy
(C{github-index.json} in the state folder) so that a restart fetches
nothing it has, and written by compare-and-swap (the blob sha as the
precondition; a conflict with another writer reads again and redoes).
"""

import base64
import json
import os
import random
from urllib.parse import quote

from twisted.internet.task import deferLater

from ...domain import DistFile
from ...names import InvalidFilename, parse_filename
from ..interface import BackendError, doc_status_change, doc_statuses
from ..local import load_cache, save_cache
from .api import GitHubError

INDEX_DIR = "index"
DOC_FORMAT = 1
# Tries at writing a project's index file before an upload gives up; between
# tries a random pause that grows (many writers at one project spread out).
MAX_INDEX_RETRIES = 12
INDEX_RETRY_PAUSE = 0.1
INDEX_RETRY_PAUSE_MAX = 3.0


def b64(data):
    return base64.b64encode(data).decode("ascii")


def doc_path(project):
    return f"{INDEX_DIR}/{project}.json"


def dist_from_entry(filename, entry):
    dist = parse_filename(filename)
    return DistFile(
        filename, dist.project, dist.version, dist.kind, entry["sha256"], entry["size"],
        int(entry["upload_time"] * 1e9), entry.get("requires_python"), str(entry["asset_id"]),
        entry.get("metadata_sha256"), bool(entry.get("core_metadata")), entry["upload_time"],
        entry.get("summary"), bool(entry.get("provenance_asset_id")))


class IndexDocuments:
    """
    @ivar docs: project -> {"blob": sha, "doc": {...}}; None until the
        first sync loaded the local copy.
    """

    def __init__(self, remote, state_dir):
        self.remote = remote
        self.state_dir = state_dir
        self.cache_path = os.path.join(state_dir, "github-index.json")
        self.tree_etag = None
        self.docs = None

    # -- the local copy (blocking: run in a thread)

    def _load_cache(self):
        data, problem = load_cache(self.cache_path, self.remote.describe())
        if problem:
            self.remote.log.warn(
                "repository {repo}: {path} {problem}; fetching the index again",
                repo=self.remote.name, path=self.cache_path, problem=problem)
        try:
            return (data["tree_etag"], data["docs"]) if data else (None, {})
        except (KeyError, TypeError):
            return None, {}

    def _save_cache(self, tree_etag, docs):
        save_cache(self.cache_path, self.remote.describe(), tree_etag=tree_etag, docs=docs)

    # -- what the index holds

    def files(self):
        files = []
        for project, held in self.docs.items():
            for filename, entry in held["doc"].get("files", {}).items():
                try:
                    files.append(dist_from_entry(filename, entry))
                except (InvalidFilename, KeyError, TypeError, ValueError):
                    self.remote.log.warn(
                        "repository {repo}: skipped a bad entry {filename} in {path}",
                        repo=self.remote.name, filename=filename, path=doc_path(project))
        return files

    def entry(self, project, filename):
        held = (self.docs or {}).get(project)
        return held and held["doc"].get("files", {}).get(filename)

    def indexed(self, project, filename):
        entry = self.entry(project, filename)
        return dist_from_entry(filename, entry) if entry else None

    def yanks(self):
        if self.docs is None:
            return {}
        return {project: dict(held["doc"].get("yanked", {}))
                for project, held in self.docs.items() if held["doc"].get("yanked")}

    def statuses(self):
        return doc_statuses(self.docs)

    # -- reading

    async def fetch(self, blob_sha):
        remote = self.remote
        response = await remote.api.request(
            "GET", f"{remote.path}/git/blobs/{blob_sha}", remote.admin_token)
        blob = response.json()
        return json.loads(base64.b64decode(blob["content"]))

    async def sync(self):
        """
        Sync with the repository: one conditional request when nothing
        changed. Returns how many documents were fetched.
        """
        remote = self.remote
        if self.docs is None:
            self.tree_etag, self.docs = await remote.run(self._load_cache)
        branch = quote(remote.branch, safe="")
        try:
            response = await remote.api.request(
                "GET", f"{remote.path}/git/trees/{branch}?recursive=1", remote.admin_token,
                etag=self.tree_etag if self.docs is not None else None)
        except GitHubError as e:
            if e.status in (404, 409):
                raise BackendError(
                    f"{remote.describe()}: branch not found or repository empty; "
                    "run: ppypi github init") from None
            raise
        fetched = 0
        if response.status == 304:
            return fetched
        wanted = {}
        for item in response.json().get("tree", []):
            path = item.get("path", "")
            if item.get("type") == "blob" and path.startswith(INDEX_DIR + "/") \
                    and path.endswith(".json"):
                wanted[path[len(INDEX_DIR) + 1:-len(".json")]] = item["sha"]
        docs = {}
        for project, blob_sha in wanted.items():
            held = self.docs.get(project)
            if held is not None and held["blob"] == blob_sha:
                docs[project] = held
                continue
            try:
                doc = await self.fetch(blob_sha)
            except (ValueError, KeyError, TypeError):
                remote.log.warn("repository {repo}: {path} is not valid JSON; skipped",
                                repo=remote.name, path=doc_path(project))
                continue
            fetched += 1
            docs[project] = {"blob": blob_sha, "doc": doc}
        self.docs = docs
        self.tree_etag = response.header("etag")
        await remote.run(self._save_cache, self.tree_etag, docs)
        return fetched

    async def read(self, project, token):
        """(doc, blob sha or None) of a project's index file, fresh from GitHub."""
        remote = self.remote
        path = f"{remote.path}/contents/{doc_path(project)}?ref={quote(remote.branch)}"
        try:
            response = await remote.api.request("GET", path, token)
        except GitHubError as e:
            if e.status == 404:
                return {"format": DOC_FORMAT, "project": project, "files": {}, "yanked": {}}, None
            raise
        found = response.json()
        if found.get("encoding") == "none":
            # Over 1 MiB the contents API leaves the content out: the blob has it.
            return await self.fetch(found["sha"]), found["sha"]
        return json.loads(base64.b64decode(found["content"])), found["sha"]

    # -- writing

    async def update(self, project, token, change):
        """
        Read-modify-write a project's index file, with the blob sha as the
        precondition; on a conflict with another writer, read again and redo.

        @param change: C{f(doc) -> result}; it edits C{doc} in place, or
            returns without editing (then nothing is written).
        @return: what C{change} returned.
        """
        remote = self.remote
        for attempt in range(MAX_INDEX_RETRIES):
            if attempt:
                pause = min(INDEX_RETRY_PAUSE_MAX, INDEX_RETRY_PAUSE * 2 ** attempt)
                await deferLater(remote.clock, random.uniform(0, pause), lambda: None)
            doc, sha = await self.read(project, token)
            before = json.dumps(doc, sort_keys=True)
            result = change(doc)
            after = json.dumps(doc, sort_keys=True, indent=1)
            if json.dumps(doc, sort_keys=True) == before:
                return result
            body = {"message": f"ppypi: update {project}", "content": b64(after.encode()),
                    "branch": remote.branch}
            if sha is not None:
                body["sha"] = sha
            try:
                response = await remote.api.request(
                    "PUT", f"{remote.path}/contents/{doc_path(project)}", token,
                    json_body=body, ok=(200, 201), retry=False)
            except GitHubError as e:
                if e.status in (409, 422):
                    remote.log.info("repository {repo}: {path} changed under us; retrying",
                                    repo=remote.name, path=doc_path(project))
                    continue
                raise
            blob_sha = (response.json() or {}).get("content", {}).get("sha")
            if self.docs is not None and blob_sha:
                self.docs[project] = {"blob": blob_sha, "doc": doc}
                # A restart then fetches nothing it wrote itself.
                await remote.run(self._save_cache, self.tree_etag, self.docs)
            return result
        raise BackendError(f"{doc_path(project)}: still conflicting after "
                           f"{MAX_INDEX_RETRIES} tries")

    async def set_yank(self, project, version, reason, token):
        """Yank C{version} (C{reason}: a string) or unyank it (None)."""

        def change(doc):
            yanked = doc.setdefault("yanked", {})
            if reason is None:
                yanked.pop(version, None)
            else:
                yanked[version] = reason

        await self.update(project, token, change)
        return self.yanks()

    async def set_status(self, project, status, reason, token):
        """Set a project's status (PEP 792); "active" without a reason drops it."""
        await self.update(project, token, doc_status_change(project, status, reason))
        return self.statuses()
