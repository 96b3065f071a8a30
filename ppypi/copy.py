"""
Copying one repository into another (C{ppypi copy}): every file (with its
PEP 740 provenance), the yanks, the project statuses and the names held,
from any kind of repository to any other, through the
L{ppypi.backends.interface} alone.

A file already in the destination with the same sha256 is left alone, so
a run after an interruption copies only what is missing, and a run after a
complete one copies nothing. Each file goes as an upload goes: written to
the destination's incoming folder while it is hashed, checked as an upload
is checked, then published by the destination's own C{store} (which never
lists a partial file). Files are streamed, never held whole in memory.
"""

import hashlib
import os
import tempfile
from urllib.parse import urlsplit

import treq
from twisted.internet.defer import CancelledError
from twisted.logger import Logger

from .backends import registry
from .backends.interface import (BackendError, Conflict, FileMissing, LocalFile, Redirect,
                                 StorageFull, Stream)
from .domain import UploadedFile
from .names import InvalidFilename, parse_filename
from .web.upload import UploadError, check_upload

log = Logger()

CHUNK = 256 * 1024
# Seconds a redirect's host may take to answer (the body has no limit: a
# large file on a slow link takes what it takes).
FETCH_TIMEOUT = 60

# What became of a file.
COPIED = "copied"
THERE = "already there"
CONFLICT = "conflict"
FAILED = "failed"


def make_backend(rc, config, root, clock, run_in_thread, http=None):
    """
    A repository's backend, made as the daemon makes it (L{ppypi.tap.build}):
    its state folder under ROOT, the others' configurations beside it. Not
    yet prepared: C{prepare()} is blocking.
    """
    return registry.create(registry.BackendContext(
        config=rc, state_dir=os.path.join(root, ".ppypi", "repositories", rc.name),
        run_in_thread=run_in_thread, clock=clock, http=http,
        others=[o for o in config.repositories if o is not rc], on_retry=lambda: None))


class Progress:
    """
    What a copy tells as it goes; this one ignores it all (the command
    draws it, see L{ppypi.cli}).
    """

    def planned(self, plan):
        """The work, before any of it: a L{Plan}."""

    def received(self, count):
        """C{count} more bytes of the file being copied arrived."""

    def finished(self, dist, outcome, reason=None):
        """One file of the plan's C{todo} is done with: an outcome, and why
        when it is not L{COPIED}."""

    def note(self, line):
        """Something else done (or that would be done, on a dry run)."""


class Plan:
    """
    What the listings say: C{todo}, the source's files to copy (sorted);
    C{already}, how many are in the destination with the same sha256;
    C{conflicts}, (file, the destination's file) pairs of one name and
    other content.
    """

    def __init__(self, todo, already, conflicts):
        self.todo = todo
        self.already = already
        self.conflicts = conflicts
        self.todo_bytes = sum(f.size for f in todo)


class Report:
    """
    What a copy did. C{problems}: (what, why) pairs for every conflict and
    failure, in order.
    """

    def __init__(self, dry_run=False):
        self.dry_run = dry_run
        self.copied = 0
        self.copied_bytes = 0
        self.already = 0
        self.conflicts = 0
        self.failed = 0
        self.would_copy = []
        self.yanks_set = []
        self.statuses_set = []
        self.held_added = set()
        self.problems = []

    @property
    def complete(self):
        """Everything of the source is in the destination (on a dry run:
        could be, nothing is in the way)."""
        return not self.conflicts and not self.failed

    def dry_run_lines(self):
        """What a run would do, a line each."""
        for dist in self.would_copy:
            yield f"would copy {dist.filename} ({dist.size} bytes)"
        for project, version, reason in self.yanks_set:
            yield f"would yank {project} {version}" + (f" ({reason})" if reason else "")
        for project, status in self.statuses_set:
            yield f"would mark {project} {status}"
        if self.held_added:
            yield "would hold the names " + ", ".join(sorted(self.held_added))

    def summary(self):
        """One line: copied, already there, conflicts, failed; yanks, names held."""
        if self.dry_run:
            size = sum(f.size for f in self.would_copy)
            line = f"dry run: {len(self.would_copy)} to copy ({size} bytes)"
        else:
            line = f"{self.copied} copied ({self.copied_bytes} bytes)"
        would = "would be " if self.dry_run else ""
        return (f"{line}, {self.already} already there, {_count(self.conflicts, 'conflict')}, "
                f"{self.failed} failed; {_count(len(self.yanks_set), 'yank')} {would}set, "
                f"{_count(len(self.statuses_set), 'status', 'statuses')} {would}set, "
                f"{_count(len(self.held_added), 'name')} held {would}added")


class _Refused(Exception):
    """This file cannot be copied (the others may be)."""


class _DestinationFailing(Exception):
    """The destination cannot take files now: the rest are not tried."""


class _Sink:
    """
    A file in the destination's incoming folder, written and hashed as it
    comes, as an upload's is (L{ppypi.web.multipart}); refused once it is
    larger than the source's index says (a source that never ends fills
    no disk).
    """

    def __init__(self, directory, dist):
        self.dist = dist
        fd, self.path = tempfile.mkstemp(dir=directory, prefix="copy-", suffix=".part")
        self.f = os.fdopen(fd, "wb")
        self.size = 0
        self.hashes = (hashlib.sha256(), hashlib.md5(), hashlib.blake2b(digest_size=32))

    def write(self, data):
        self.size += len(data)
        if self.size > self.dist.size:
            raise _Refused(f"the source gave more than the {self.dist.size} bytes its index says")
        self.f.write(data)
        for h in self.hashes:
            h.update(data)

    def pump(self, source):
        """Copy one chunk from the file object C{source}; its size (0: the end)."""
        try:
            data = source.read(CHUNK)
        except OSError as e:
            # The source's disk, not ours (ours is an OSError: see Copier).
            raise BackendError(f"reading it failed: {e.strerror or e}") from None
        self.write(data)
        return len(data)

    def finish(self):
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        sha256, md5, blake2 = (h.hexdigest() for h in self.hashes)
        return UploadedFile(self.dist.filename, self.path, self.size, sha256, md5, blake2)

    def remove(self):
        self.f.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def check_file(upload):
    """
    The checks an upload gets (L{check_upload}), for a file that comes with
    no form: its name and version are what its filename says, so every
    check of the file itself runs (the archive's members, its metadata's
    name and version against the filename).

    @return: L{ppypi.domain.CheckedUpload}
    @raise UploadError: refused, as an upload would be.
    """
    try:
        name = parse_filename(upload.filename)
    except InvalidFilename:
        raise UploadError(f"Invalid distribution filename {upload.filename!r}") from None
    return check_upload({"name": [name.project], "version": [name.version]}, upload)


class Copier:
    """
    One copy of C{source} into C{dest} (both prepared backends). Its
    L{run}'s Deferred may be cancelled (the command is interrupted): the
    file part way is removed from the incoming folder, no other is begun.

    @param run_in_thread: the thread runner (blocking file IO goes there).
    @param http: a treq C{HTTPClient}, for files a source gives as a
        L{Redirect} (no credentials are sent with it).
    @param max_file_bytes: the destination's limit on uploads (None: none).
    """

    def __init__(self, source, dest, run_in_thread, http=None, progress=None,
                 max_file_bytes=None):
        self.source = source
        self.dest = dest
        self._run = run_in_thread
        self.http = http
        self.progress = progress or Progress()
        self.max_file_bytes = max_file_bytes

    async def plan(self):
        """
        List both (each listing is what the other calls need first).

        @raise BackendError: either cannot be listed.
        """
        source_files = (await self.source.list_files()).files
        self.source_projects = {f.project for f in source_files}
        there = {f.filename: f for f in (await self.dest.list_files()).files}
        todo, already, conflicts = [], 0, []
        for dist in sorted(source_files, key=lambda f: (f.project, f.filename)):
            held = there.get(dist.filename)
            if held is None:
                todo.append(dist)
            elif held.sha256 == dist.sha256:
                already += 1
            else:
                conflicts.append((dist, held))
        return Plan(todo, already, conflicts)

    async def run(self, dry_run=False):
        """
        Copy: the files, then the yanks, then the names held.

        @return: a L{Report}.
        @raise BackendError: a listing failed (nothing was copied).
        """
        report = Report(dry_run)
        plan = await self.plan()
        report.already = plan.already
        self.progress.planned(plan)
        for dist, held in plan.conflicts:
            self._problem(report, dist.filename, CONFLICT,
                          f"{self.dest.name} has a file of that name with other content "
                          f"(sha256 {held.sha256}, the source's {dist.sha256}); left as it is")
        if dry_run:
            report.would_copy = list(plan.todo)
        else:
            await self._copy_files(plan.todo, report)
        await self._copy_yanks(report, dry_run)
        await self._copy_statuses(report, dry_run)
        await self._copy_held(report, dry_run)
        log.info("copy {source} -> {dest}: {summary}", source=self.source.name,
                 dest=self.dest.name, summary=report.summary())
        return report

    def _problem(self, report, what, outcome, reason, tell=True):
        """A conflict or a failure: counted, logged, and told (unless the
        progress hears of it as a file finished)."""
        if tell:
            self.progress.note(f"{outcome}: {what}: {reason}")
        if outcome == CONFLICT:
            report.conflicts += 1
        else:
            report.failed += 1
        report.problems.append((what, reason))
        log.warn("copy {source} -> {dest}: {what}: {outcome}: {reason}",
                 source=self.source.name, dest=self.dest.name, what=what,
                 outcome=outcome, reason=reason)

    async def _copy_files(self, todo, report):
        for i, dist in enumerate(todo):
            try:
                outcome, reason = await self.copy_file(dist)
            except _DestinationFailing as e:
                self._problem(report, dist.filename, FAILED, str(e), tell=False)
                self.progress.finished(dist, FAILED, str(e))
                # The destination refuses everything now; the next run resumes.
                rest = todo[i + 1:]
                if rest:
                    self.progress.note(f"{len(rest)} more files not tried: {e}")
                    log.warn("copy {source} -> {dest}: {count} more files not tried",
                             source=self.source.name, dest=self.dest.name, count=len(rest))
                for left in rest:
                    report.failed += 1
                    report.problems.append((left.filename, "not tried"))
                    self.progress.finished(left, FAILED)
                return
            if outcome == COPIED:
                report.copied += 1
                report.copied_bytes += dist.size
                log.info("copy {source} -> {dest}: copied {filename} ({size} bytes)",
                         source=self.source.name, dest=self.dest.name,
                         filename=dist.filename, size=dist.size)
            elif outcome == THERE:
                report.already += 1
            else:
                self._problem(report, dist.filename, outcome, reason, tell=False)
            self.progress.finished(dist, outcome, reason)

    async def copy_file(self, dist):
        """
        Copy one file: (outcome, why).

        @raise _DestinationFailing: the destination cannot store files now.
        """
        if self.max_file_bytes is not None and dist.size > self.max_file_bytes:
            return FAILED, (f"{dist.size} bytes, larger than {self.dest.name}'s "
                            f"max_file_bytes ({self.max_file_bytes})")
        try:
            sink = await self._run(_Sink, self.dest.incoming_dir, dist)
        except OSError as e:
            raise _DestinationFailing(f"cannot write in {self.dest.incoming_dir}: "
                                      f"{e.strerror or e}") from None
        try:
            try:
                await self._fetch(dist, sink)
                upload = await self._run(sink.finish)
            except _Refused as e:
                return FAILED, str(e)
            except FileMissing:
                return FAILED, f"{self.source.name} no longer has it"
            except BackendError as e:
                return FAILED, f"reading it from {self.source.name} failed: {e}"
            except OSError as e:
                raise _DestinationFailing(f"cannot write in {self.dest.incoming_dir}: "
                                          f"{e.strerror or e}") from None
            if upload.sha256 != dist.sha256:
                return FAILED, (f"its bytes hash to sha256 {upload.sha256}, not the "
                                f"{dist.sha256} {self.source.name}'s index says; not stored")
            try:
                checked = await self._run(check_file, upload)
            except UploadError as e:
                return FAILED, f"refused as an upload would be: {e.message}"
            if dist.provenance:
                # PEP 740: verified at its upload, it goes along, beside it.
                try:
                    checked.provenance = await self.source.read_provenance(dist)
                except BackendError as e:
                    return FAILED, f"reading its provenance from {self.source.name} failed: {e}"
            try:
                stored = await self.dest.store(upload, checked, overwrite=False)
            except Conflict:
                return CONFLICT, (f"{self.dest.name} has a file of that name with other "
                                  f"content; left as it is")
            except StorageFull as e:
                raise _DestinationFailing(f"{self.dest.name} is full: {e}") from None
            except (BackendError, OSError) as e:
                raise _DestinationFailing(f"storing it in {self.dest.name} failed: {e}") from None
            return (COPIED if stored.status == "stored" else THERE), None
        finally:
            # Stored by a rename or a link, or not at all, or the copy was
            # cancelled (interrupted): the incoming file goes.
            await self._run(sink.remove)

    async def _fetch(self, dist, sink):
        got = await self.source.download(dist)
        if isinstance(got, LocalFile):
            try:
                if got.head:
                    sink.write(got.head)
                    self.progress.received(len(got.head))
                while True:
                    count = await self._run(sink.pump, got.file)
                    if not count:
                        break
                    self.progress.received(count)
            finally:
                await self._run(got.file.close)
        elif isinstance(got, Stream):
            await got.deliver(self._writer(sink))
        elif isinstance(got, Redirect):
            await self._get(got.url, sink)
        else:
            raise BackendError(f"a download of an unknown kind: {type(got).__name__}")

    def _writer(self, sink):
        # A stream or a response calls this on the reactor thread, chunk by
        # chunk, and cannot wait for a thread: the chunk is written here
        # (the command has nothing else to serve meanwhile).
        def write(data):
            sink.write(data)
            self.progress.received(len(data))
        return write

    async def _get(self, url, sink):
        """The whole file at a source's URL: no credentials go to its host."""
        if self.http is None:
            raise BackendError("the source gave a URL, and there is no HTTP client to get it")
        try:
            response = await self.http.get(url, timeout=FETCH_TIMEOUT)
        except CancelledError:
            raise
        except Exception as e:
            raise BackendError(f"GET {_host(url)} failed: {e}") from None
        if response.code != 200:
            await treq.content(response)
            raise BackendError(f"GET {_host(url)} answered {response.code}")
        try:
            await treq.collect(response, self._writer(sink))
        except (_Refused, CancelledError):
            raise
        except Exception as e:
            raise BackendError(f"GET {_host(url)} failed part way: {e}") from None

    async def _copy_yanks(self, report, dry_run):
        """
        Every yank of the source that the destination lacks, with its
        reason. A release the destination yanked already keeps its own
        reason (it may have been given there since).
        """
        try:
            wanted = await self.source.load_yanks()
            there = await self.dest.load_yanks()
        except BackendError as e:
            self._problem(report, "yanks", FAILED, f"cannot read them: {e}")
            return
        for project in sorted(wanted):
            for version, reason in sorted(wanted[project].items()):
                if version in there.get(project, {}):
                    continue
                if not dry_run:
                    try:
                        await self.dest.set_yank(project, version, reason)
                    except BackendError as e:
                        self._problem(report, f"yank {project} {version}", FAILED, str(e))
                        continue
                    self.progress.note(f"yanked {project} {version}"
                                       + (f" ({reason})" if reason else ""))
                report.yanks_set.append((project, version, reason))

    async def _copy_statuses(self, report, dry_run):
        """Every project status (PEP 792) the destination lacks; one set there stays."""
        try:
            wanted = await self.source.load_statuses()
            there = await self.dest.load_statuses()
        except BackendError as e:
            self._problem(report, "project statuses", FAILED, f"cannot read them: {e}")
            return
        for project, status in sorted(wanted.items()):
            if project in there:
                continue
            if not dry_run:
                try:
                    await self.dest.set_status(project, status["status"], status["reason"])
                except BackendError as e:
                    self._problem(report, f"status of {project}", FAILED, str(e))
                    continue
                self.progress.note(f"{project} is {status['status']}")
            report.statuses_set.append((project, status["status"]))

    async def _copy_held(self, report, dry_run):
        """The destination holds every name the source holds (its own
        projects included): none of them may fall through to the extra
        index there."""
        try:
            wanted = set(await self.source.load_held()) | self.source_projects
            there = set(await self.dest.load_held())
        except BackendError as e:
            self._problem(report, "names held", FAILED, f"cannot read them: {e}")
            return
        missing = wanted - there
        if not missing:
            return
        if not dry_run:
            try:
                await self.dest.save_held(there | wanted)
            except BackendError as e:
                self._problem(report, "names held", FAILED, f"cannot save them: {e}")
                return
            self.progress.note("names held now: " + ", ".join(sorted(missing)))
        report.held_added = missing


def _count(number, noun, plural=None):
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _host(url):
    """A URL's scheme and host, for messages: a signed URL's query is a credential."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..."


async def copy_repository(source, dest, run_in_thread, http=None, progress=None,
                          max_file_bytes=None, dry_run=False):
    """
    Copy every file, yank and name held of C{source} into C{dest}, both
    prepared backends; see L{Copier}.

    @return: a L{Report}; C{report.complete} when everything is in C{dest}.
    @raise BackendError: a listing failed.
    """
    copier = Copier(source, dest, run_in_thread, http, progress, max_file_bytes)
    return await copier.run(dry_run)
