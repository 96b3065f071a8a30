"""
The C{ppypi} commands that work on a repository's store directly, with the
daemon's own configuration and no server running: C{github init|reindex},
C{copy} and C{token} (their arguments are in L{ppypi.cli}).
"""

import os
import sys
import time


def _progress(stream):
    def show(done, total):
        width = 30
        filled = width * done // total if total else width
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} files")
        if done == total:
            stream.write("\n")
        stream.flush()
    return show


def _load_config(args, command):
    """(ROOT, configuration with the admin secret) of --root/--config/--admin-secret."""
    from .config import ConfigError, load_admin_secret, load_config

    root = os.path.abspath(args.root)
    try:
        config = load_config(args.config, root, args.config_or_admin_secret_can_be_text)
        load_admin_secret(args.admin_secret, config, args.config_or_admin_secret_can_be_text)
    except ConfigError as e:
        raise SystemExit(f"{command}: {e}") from None
    return root, config


def github(args, stdout=None):
    """ppypi github init / reindex, with the daemon's own configuration."""
    from twisted.internet import defer, task

    from .backends import registry

    stdout = stdout or sys.stdout
    root, config = _load_config(args, "ppypi github")
    candidates = [r for r in config.repositories if r.type == "github"
                  and (args.repository is None or r.name == args.repository)]
    if len(candidates) != 1:
        raise SystemExit("ppypi github: name one github repository of the configuration"
                         if candidates else "ppypi github: no such github repository")
    rc = candidates[0]
    if rc.admin_secret is None:
        raise SystemExit(f"ppypi github: repository {rc.name} needs an admin secret")

    async def run(reactor):
        from twisted.internet.threads import deferToThread
        backend = registry.create(registry.BackendContext(
            config=rc, state_dir=os.path.join(root, ".ppypi", "repositories", rc.name),
            run_in_thread=deferToThread, clock=reactor, http=None,
            others=[o for o in config.repositories if o is not rc], on_retry=None))
        await deferToThread(backend.prepare)
        if args.action == "init":
            created = await backend.init()
            stdout.write(f"{backend.describe()}: "
                         f"{'layout created' if created else 'already set up'}\n")
        else:
            count = await backend.reindex(_progress(sys.stderr))
            stdout.write(f"{backend.describe()}: indexed {count} files\n")

    def main(reactor):
        return defer.Deferred.fromCoroutine(run(reactor))

    try:
        task.react(main)
    except SystemExit as e:
        if e.code:
            raise SystemExit(f"ppypi github {args.action}: failed (see above)") from None


def token(args, stdout=None):
    """ppypi token create|list|revoke REPOSITORY: the store's upload tokens."""
    import datetime

    from twisted.internet import defer, task

    from .backends.interface import BackendError
    from .backends.proxy import parse_duration
    from .copy import make_backend
    from .names import is_valid_name, normalize
    from .tokens import TokenBook, live

    stdout = stdout or sys.stdout
    root, config = _load_config(args, "ppypi token")
    try:
        rc = config.repository(args.repository)
    except KeyError:
        raise SystemExit(f"ppypi token: no repository {args.repository!r} in the "
                         "configuration") from None
    projects = None
    if args.action == "create":
        if bool(args.projects) == bool(args.all_projects):
            raise SystemExit("ppypi token create: name the projects (--project NAME ...) "
                             "or say --all-projects")
        if args.projects:
            bad = [p for p in args.projects if not is_valid_name(p)]
            if bad:
                raise SystemExit(f"ppypi token create: not a project name: {bad[0]!r}")
            projects = {normalize(p) for p in args.projects}
        try:
            lifetime = None if args.expires == "never" else parse_duration(args.expires)
        except ValueError:
            raise SystemExit(f"ppypi token create: --expires {args.expires!r} is not a "
                             "duration (90d, 12h, never)") from None
    elif args.action == "revoke" and not args.token_id:
        raise SystemExit("ppypi token revoke: name the token's id (ppypi token list)")
    outcome = {}

    async def run(reactor):
        def in_thread(f, *a, **kw):
            return defer.maybeDeferred(f, *a, **kw)

        backend = make_backend(rc, config, root, reactor, in_thread)
        if getattr(backend, "fetch_project", None) is not None:
            outcome["error"] = f"{rc.name} is a mirror: it takes no uploads"
            return
        # Not prepared: that would clear the incoming uploads of a server on this ROOT.
        book = TokenBook(backend)
        try:
            await book.refresh()
            await act(book)
        except BackendError as e:
            outcome["error"] = f"{rc.name}: {e}"

    async def act(book):
        if args.action == "create":
            expires = time.time() + lifetime if lifetime is not None else None
            made, record = await book.create(projects, expires=expires,
                                             description=args.description)
            stdout.write(f"{made}\n")
            sys.stderr.write(f"ppypi token: {record['id']} for {rc.name}"
                             f" ({', '.join(record['projects'] or ['every project'])}), "
                             f"{_when(record['expires'])}; it is shown once: use it as "
                             "the password of __token__\n")
        elif args.action == "list":
            for record in sorted(book.records.values(), key=lambda r: r.get("created", 0)):
                if record.get("sha256") is None:
                    continue
                state = "" if live(record) else " (expired)"
                stdout.write(f"{record['id']}  {record.get('kind', 'api')}  "
                             f"{','.join(record['projects'] or ['*'])}  "
                             f"{_when(record.get('expires'))}{state}  "
                             f"{record.get('description', '')}\n")
        else:
            if not await book.revoke(args.token_id):
                outcome["error"] = f"no token {args.token_id} in {rc.name}"

    def _when(expires):
        if expires is None:
            return "never expires"
        stamp = datetime.datetime.fromtimestamp(expires, datetime.timezone.utc)
        return "expires " + stamp.strftime("%Y-%m-%d %H:%M UTC")

    def main(reactor):
        return defer.ensureDeferred(run(reactor))

    try:
        task.react(main)
    except SystemExit as e:
        if e.code:
            raise
    if "error" in outcome:
        raise SystemExit(f"ppypi token {args.action}: {outcome['error']}")


def _size(count):
    for unit in ("bytes", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000


class _CopyProgress:
    """
    A copy's progress on C{stream}: on a terminal, a bar (files and bytes)
    with the problems above it; elsewhere (a log, CI), a line a file.
    """

    # Seconds between redraws while a file arrives.
    REDRAW = 0.1

    def __init__(self, stream, tty, clock=time.monotonic):
        self.stream = stream
        self.tty = tty
        self.clock = clock
        self.total = self.total_bytes = self.done = self.done_bytes = self.current = 0
        self._drawn = False
        self._last = 0.0

    def planned(self, plan):
        self.total = len(plan.todo)
        self.total_bytes = plan.todo_bytes
        self.line(f"{self.total} files to copy ({_size(self.total_bytes)}), "
                  f"{plan.already} already there"
                  + (f", {len(plan.conflicts)} in conflict" if plan.conflicts else ""))
        self._draw()

    def received(self, count):
        self.current += count
        if self.tty and self.clock() - self._last >= self.REDRAW:
            self._draw()

    def finished(self, dist, outcome, reason=None):
        self.done += 1
        self.done_bytes += dist.size
        self.current = 0
        if not self.tty:
            self.line(f"[{self.done}/{self.total}] {outcome}: {dist.filename}"
                      + (f": {reason}" if reason else ""))
        elif reason:
            self.line(f"{outcome}: {dist.filename}: {reason}")  # the bar is drawn again
        else:
            self._draw()

    def note(self, line):
        self.line(line)

    def line(self, text):
        if self._drawn:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        if self._drawn:
            self._draw()
        self.stream.flush()

    def _draw(self):
        if not self.tty:
            return
        self._last = self.clock()
        width = 30
        filled = width * self.done // self.total if self.total else width
        received = min(self.done_bytes + self.current, self.total_bytes)
        self.stream.write(f"\r\x1b[K[{'#' * filled}{'.' * (width - filled)}] "
                          f"{self.done}/{self.total} files, "
                          f"{_size(received)} of {_size(self.total_bytes)}")
        self.stream.flush()
        self._drawn = True

    def close(self):
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _log_to(progress):
    """
    Warnings and errors (a backend's, a crash's) on stderr, through the
    progress so that they never break the bar; the copy's own come through
    the progress already.
    """
    from twisted.logger import LogLevel, formatEvent, globalLogBeginner

    def observe(event):
        if event.get("log_level", LogLevel.info) < LogLevel.warn:
            return
        if event.get("log_namespace", "").startswith("ppypi.copy"):
            return
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback().rstrip("\n")
        progress.line(f"ppypi copy: {text}")

    globalLogBeginner.beginLoggingTo([observe], redirectStandardIO=False)


def copy(args, stdout=None, stderr=None):
    """ppypi copy SOURCE DEST, with the daemon's own configuration."""
    from twisted.internet import defer, task

    from . import copy as copying
    from .backends.interface import BackendError

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    root, config = _load_config(args, "ppypi copy")
    named = {r.name: r for r in config.repositories}
    for name in (args.source, args.dest):
        if name not in named:
            raise SystemExit(f"ppypi copy: no repository {name!r} in the configuration "
                             f"(it has {', '.join(sorted(named))})")
    if args.source == args.dest:
        raise SystemExit("ppypi copy: SOURCE and DEST are the same repository")
    progress = _CopyProgress(stderr, stderr.isatty())
    outcome = {}

    async def run(reactor):
        from treq.client import HTTPClient
        from twisted.internet.threads import deferToThread
        from twisted.web.client import Agent, HTTPConnectionPool

        _log_to(progress)
        # For files a source gives as a URL: no credentials go with them.
        pool = HTTPConnectionPool(reactor)
        http = HTTPClient(Agent(reactor, pool=pool))
        backends = []
        try:
            for name in (args.source, args.dest):
                backend = copying.make_backend(named[name], config, root, reactor,
                                               deferToThread)
                # As the daemon does before its first listing.
                try:
                    await deferToThread(backend.prepare)
                except OSError as e:
                    raise BackendError(f"repository {name}: {e.filename}: "
                                       f"{e.strerror or e}") from None
                backends.append(backend)
            outcome["report"] = await copying.copy_repository(
                *backends, deferToThread, http, progress,
                max_file_bytes=named[args.dest].max_file_bytes, dry_run=args.dry_run)
        except (BackendError, OSError) as e:
            outcome["error"] = str(e) or type(e).__name__
        except defer.CancelledError:
            outcome["interrupted"] = True
        finally:
            progress.close()
            await pool.closeCachedConnections()

    def main(reactor):
        work = defer.Deferred.fromCoroutine(run(reactor))

        def interrupted():
            # Ctrl-C or SIGTERM: the copy stops where it is and cleans up
            # (its incoming file) before the reactor and its threads stop.
            if not work.called:
                work.cancel()
                return work
        reactor.addSystemEventTrigger("before", "shutdown", interrupted)
        return work

    try:
        task.react(main)
    except SystemExit as e:
        if e.code:
            raise SystemExit("ppypi copy: failed (see above)") from None
    if "error" in outcome:
        raise SystemExit(f"ppypi copy: {outcome['error']}")
    if "report" not in outcome:
        raise SystemExit(f"ppypi copy: interrupted; run it again to copy what {args.dest} "
                         f"still lacks")
    report = outcome["report"]
    if report.dry_run:
        for line in report.dry_run_lines():
            stdout.write(line + "\n")
    stdout.write(report.summary() + "\n")
    stdout.flush()
    if not report.complete:
        raise SystemExit(f"ppypi copy: {args.dest} lacks some of {args.source} (see above)"
                         if not report.dry_run else
                         f"ppypi copy: a copy would leave some of {args.source} out (see above)")
