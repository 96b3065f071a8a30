"""
The daemon's wiring: C{twistd ppypi} options and the service they make.
"""

import getopt
import math
import os
import sys

from twisted.application import strports
from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.threads import deferToThreadPool
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool


from . import heap
from .auth import Authenticator, load_or_create_token
from .logs import stdout_observer
from .backends import registry
from .backends.registry import BackendContext
from .config import ConfigError, load_admin_secret, load_config
from .metrics import Metrics
from .attestations import AttestationVerifier
from .oidc import Minter
from .repository import Repository
from .tokens import TokenBook
from .web.app import RepositoryApp
from .web.site import IndexSite, Root

log = Logger()

# Idle HTTP connections are closed after this many seconds (Twisted's
# default, 12 hours, lets idle clients pile up); see --timeout.
HTTP_IDLE_TIMEOUT = 60
# How often expired authentications are dropped and htpasswd is re-read.
AUTH_MAINTENANCE_INTERVAL = 60


def _positive(name, value, kind=float):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise usage.UsageError(f"--{name} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise usage.UsageError(f"--{name} must be a finite number, not negative")
    return number


class Options(usage.Options):
    """C{twistd ppypi} options; see SPEC.md."""

    # ROOT alone is how private-pypi's server was started.
    synopsis = "[--root] ROOT [options]"

    optParameters = [
        ["root", None, None, "data folder: state, index, and the default repository's files"],
        ["config", None, None, "repositories, users, permissions (YAML, or private-pypi TOML)"],
        ["admin-secret", None, None, "the server's own backend credentials, per repository"],
        ["auth-read-expires", None, "3600", "seconds a successful read authentication is cached"],
        ["auth-write-expires", None, "300", "seconds a successful write authentication is cached"],
        ["extra-index-url", None, "https://pypi.org/simple/",
         'where unknown projects are redirected; "" turns it off'],
        ["host", None, "0.0.0.0", "interface to listen on (unless --listen)"],
        ["port", None, "8888", "port to listen on (unless --listen)"],
        ["timeout", None, str(HTTP_IDLE_TIMEOUT),
         "seconds a connection may stay silent, and the grace before a request "
         "body must arrive at 1 KiB/s or more"],
    ]
    optFlags = [
        ["config-or-admin-secret-can-be-text", None,
         "--config/--admin-secret hold the content, not a path"],
        ["debug", None, "verbose logging (never credentials)"],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint):
        """Twisted endpoint string to listen on (repeatable; replaces --host/--port)."""
        self["listen"].append(endpoint)

    def parseOptions(self, options=None):
        if options is None:
            options = sys.argv[1:]
        # private-pypi spelled its options with underscores.
        fixed = []
        for arg in options:
            if arg.startswith("--") and "_" in arg.split("=", 1)[0]:
                name, eq, value = arg.partition("=")
                arg = name.replace("_", "-") + eq + value
            fixed.append(arg)
        super().parseOptions(self._options_first(fixed))

    def _options_first(self, args):
        """
        The options, then the positional arguments: getopt stops at the
        first positional one, and private-pypi's server was started as
        C{ROOT --config ...}.
        """
        try:
            opts, positional = getopt.gnu_getopt(args, self.shortOpt, self.longOpt)
        except getopt.error as e:
            raise usage.UsageError(str(e)) from None
        out = []
        for name, value in opts:
            if name.startswith("--"):
                out.append(f"{name}={value}" if name[2:] + "=" in self.longOpt else name)
            else:
                out.append(name + value)
        return out + ["--", *positional] if positional else out

    def parseArgs(self, *roots):
        if len(roots) > 1:
            raise usage.UsageError(f"one ROOT, not {len(roots)}: " + " ".join(map(repr, roots)))
        if roots:
            root, given = roots[0], self["root"]
            if given and os.path.abspath(given) != os.path.abspath(root):
                raise usage.UsageError(f"ROOT {root!r} and --root {given!r} differ; give one")
            self["root"] = given or root

    def postOptions(self):
        if not self["root"]:
            raise usage.UsageError("--root is required")
        self["auth-read-expires"] = _positive("auth-read-expires", self["auth-read-expires"])
        self["auth-write-expires"] = _positive("auth-write-expires", self["auth-write-expires"])
        self["timeout"] = _positive("timeout", self["timeout"])
        if self["timeout"] < 1:
            raise usage.UsageError("--timeout must be at least 1 second")
        port = _positive("port", self["port"], int)
        if port > 65535:
            raise usage.UsageError("--port must be at most 65535")
        self["port"] = port
        url = self["extra-index-url"]
        if url:
            if not url.startswith(("http://", "https://")):
                raise usage.UsageError(f"--extra-index-url must be an http(s) URL, not {url!r}")
            if not url.endswith("/"):
                url += "/"
        self["extra-index-url"] = url or None
        if not self["listen"]:
            host = self["host"].replace(":", "\\:")
            self["listen"] = [f"tcp:{port}:interface={host}"]
        for endpoint in self["listen"]:
            _check_endpoint(endpoint)


def _check_endpoint(description):
    from twisted.internet import endpoints, reactor

    if description.startswith("systemd:"):
        # The syntax, then the socket systemd passed, if it did. (Outside
        # systemd there is none to look up; and LISTEN_FDS is no sign of it:
        # Twisted takes it out of the environment as it is imported.)
        _check_systemd_endpoint(description)
        try:
            endpoint = endpoints.serverFromString(reactor, description)
        except (IndexError, KeyError):
            return
        _check_adopted_family(description, endpoint.fileno, endpoint.addressFamily)
        return
    try:
        endpoint = endpoints.serverFromString(reactor, description)
    except (ValueError, TypeError, KeyError, IndexError, OSError) as e:
        raise usage.UsageError(f"--listen {description!r}: {e or type(e).__name__}") from None
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise usage.UsageError(f"--listen {description!r}: port must be 0-65535")


def _check_adopted_family(description, fileno, family):
    """
    The socket systemd passed is of the family domain= names: Twisted adopts
    it as that family, and the wrong one serves but reads every client
    address as garbage (ListenStream=8888 is an INET6 socket).
    """
    import socket

    try:
        passed = socket.socket(fileno=fileno)
    except OSError as e:
        raise usage.UsageError(f"--listen {description!r}: descriptor {fileno}: {e.strerror}") from None
    actual = passed.family
    passed.detach()  # the descriptor stays open, for the endpoint
    if actual != family:
        name = {socket.AF_INET: "INET", socket.AF_INET6: "INET6",
                socket.AF_UNIX: "UNIX"}.get(actual, str(actual))
        raise usage.UsageError(f"--listen {description!r}: the socket systemd passed "
                               f"is {name}: use domain={name}")


def _check_systemd_endpoint(description):
    fields = dict(part.partition("=")[::2] for part in description.split(":")[1:])
    problems = []
    if fields.get("domain") not in ("INET", "INET6", "UNIX"):
        problems.append("domain must be INET, INET6 or UNIX")
    if "index" in fields:
        if not fields["index"].isdigit():
            problems.append("index must be a whole number")
    elif "name" not in fields:
        problems.append("needs index= or name=")
    if set(fields) - {"domain", "index", "name"}:
        problems.append("unknown parameters " + ", ".join(sorted(set(fields) - {"domain", "index", "name"})))
    if problems:
        raise usage.UsageError(f"--listen {description!r}: " + "; ".join(problems))


class DaemonService(MultiService):
    """
    The daemon: its services stop first (a sync in progress finishes), the
    thread pool they use last; stopped at once, a sync waiting on the pool
    would never finish and the process would not exit.
    """

    def __init__(self, pool_service, twistd=None):
        super().__init__()
        self.pool_service = pool_service
        # twistd's own options (foreground or not, pidfile), if run by twistd.
        self.twistd = twistd if twistd is not None else {}
        self.endpoints = {}  # listening service -> its endpoint string

    def setServiceParent(self, parent):
        super().setServiceParent(parent)
        # twistd makes the application, then starts logging with the log
        # observer it finds there (its own otherwise): see ppypi.logs.
        observer = stdout_observer(self.twistd)
        if observer is not None and parent.getComponent(ILogObserver, None) is None:
            parent.setComponent(ILogObserver, observer)

    def privilegedStartService(self):
        # MultiService's, but a port that cannot be had stops start-up with
        # one line, as a mistake in the configuration does (twistd would
        # print the traceback).
        Service.privilegedStartService(self)
        for service in self:
            try:
                service.privilegedStartService()
            except (CannotListenError, OSError) as e:
                if service not in self.endpoints:
                    raise
                self._cannot_listen(self.endpoints[service], e)

    def _cannot_listen(self, endpoint, error):
        cause = getattr(error, "socketError", None) or error
        reason = getattr(cause, "strerror", None) or str(cause)
        line = f"ppypi: cannot listen on {endpoint}: {reason[:1].lower()}{reason[1:]}"
        twistd = self.twistd
        # Before the parent twistd is told (it exits then).
        _remove_own_pidfile(twistd.get("pidfile"))
        if twistd.get("nodaemon", True):
            # sys.stderr goes to the log by now; the line goes where the
            # configuration's errors go.
            stream = sys.__stderr__ or sys.stderr
            stream.write(line + "\n")
            stream.flush()
        else:
            # Daemonised, stderr is gone: the log has it, and the parent
            # twistd, which waits on this pipe, prints it and exits 1.
            log.critical("{line}", line=line)
            pipe = twistd.get("statusPipe")
            if pipe is not None:
                os.write(pipe, b"1 " + line.encode("ascii", "backslashreplace")[:98])
                os.close(pipe)
                twistd["statusPipe"] = None
        raise SystemExit(2)

    async def _stop(self):
        others = [s for s in reversed(list(self)) if s is not self.pool_service]
        await gatherResults([maybeDeferred(s.stopService) for s in others],
                            consumeErrors=True)
        await maybeDeferred(self.pool_service.stopService)

    def stopService(self):
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stop())


def _remove_own_pidfile(path):
    """twistd removes its pidfile when start-up raises an exception, not on
    SystemExit: remove it, if it is this process's."""
    if not path:
        return
    try:
        with open(path) as f:
            if int(f.read().strip() or 0) != os.getpid():
                return
        os.unlink(path)
    except (OSError, ValueError):
        pass


class ThreadPoolService(Service):
    """Runs a thread pool for as long as the daemon runs."""

    def __init__(self, pool):
        self.pool = pool

    def startService(self):
        super().startService()
        self.pool.start()

    def stopService(self):
        super().stopService()
        self.pool.stop()


def load(options):
    """
    Load the configuration named by the options.

    @raise ConfigError: on any mistake.
    """
    root = os.path.abspath(options["root"])
    is_text = options["config-or-admin-secret-can-be-text"]
    config = load_config(options["config"], root, is_text)
    load_admin_secret(options["admin-secret"], config, is_text)
    return config


def build(options, config, reactor, run_in_thread, token=None, http=None,
          after_sync=lambda: None):
    """
    The daemon's parts, wired: (repositories, site, periodic services).

    Blocking (start-up only): it prepares the folders.

    @param http: the treq C{HTTPClient} for backends that speak HTTP
        (default: each makes a real one).
    @param after_sync: called after each periodic sync (the daemon settles
        its heap there, see L{ppypi.heap}).
    """
    root = os.path.abspath(options["root"])
    state_root = os.path.join(root, ".ppypi")
    repositories = []
    metrics = Metrics(repositories)  # it reads the list at scrape time
    for rc in config.repositories:
        context = BackendContext(
            config=rc, state_dir=os.path.join(state_root, "repositories", rc.name),
            run_in_thread=run_in_thread, clock=reactor, http=http,
            others=[o for o in config.repositories if o is not rc],
            on_retry=lambda name=rc.name: metrics.retry(name))
        backend = registry.create(context)
        stray = backend.prepare()
        if stray:
            log.warn("repository {repo}: removed {count} unfinished uploads left by a crash",
                     repo=rc.name, count=stray)
        repositories.append(Repository(rc, backend, reactor, metrics))

    # Upload tokens (ppypi token, trusted publishing), kept by each store.
    books = {r.name: TokenBook(r.backend) for r in repositories if r.mirror is None}
    authenticator = Authenticator(
        config, run_in_thread, reactor,
        read_expires=options.get("auth-read-expires", 3600),
        write_expires=options.get("auth-write-expires", 300), token=token,
        store_permissions={r.name: r.backend.permissions for r in repositories},
        token_books=books)
    minter = Minter(config.oidc.audience, config.oidc.issuers,
                    [(r.name, project, publisher) for r in repositories
                     for project, publishers in r.config.publishers.items()
                     for publisher in publishers],
                    books, http or _http_client(reactor), reactor, metrics)
    token_path = os.path.join(state_root, "upload-token") if token is not None else None
    apps = {
        r.name: RepositoryApp(r, authenticator, run_in_thread, options["extra-index-url"],
                              config.is_reserved, metrics, token_path)
        for r in repositories
    }
    verifier = AttestationVerifier(config.trusted_root)
    if config.trusted_root is not None:
        try:
            verifier.load()  # a bad file is said at start, not at the first upload
        except Exception as e:
            raise ConfigError("configuration", "attestations.trusted_root",
                              f"{config.trusted_root}: not a Sigstore trusted root ({e})")
    for r in repositories:
        apps[r.name].ctx.attestations = verifier
        if r.config.upstream is not None:
            # Names this repository never held are answered from its mirror.
            apps[r.name].ctx.upstream = apps[r.config.upstream].ctx
    spool_dir = os.path.join(state_root, "tmp")
    os.makedirs(spool_dir, exist_ok=True)
    site = IndexSite(Root(apps, repositories, metrics, minter), spool_dir,
                     {r.name: r.config.max_file_bytes for r in repositories},
                     metrics=metrics, timeout=options.get("timeout", HTTP_IDLE_TIMEOUT))
    site.displayTracebacks = False

    timers = []
    for r in repositories:
        timers.append(TimerService(
            r.config.sync_interval,
            lambda r=r: Deferred.fromCoroutine(_sync(r, books.get(r.name))).addCallback(
                _after, after_sync)))
    timers.append(TimerService(AUTH_MAINTENANCE_INTERVAL,
                               lambda: Deferred.fromCoroutine(authenticator.maintain())))
    for timer in timers:
        timer.clock = reactor
    return repositories, site, timers


async def _sync(repository, book):
    """A repository's sync, then its upload tokens read again (other servers make some)."""
    await repository.sync()
    if book is not None:
        try:
            await book.refresh()
        except Exception:
            log.failure("repository {repo}: upload tokens not read", repo=repository.name)


def _http_client(reactor):
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor)))


def _after(_, hook):
    """Run an after-sync hook; a failure is logged, never stops the syncs
    (a TimerService whose call fails stops calling)."""
    try:
        hook()
    except Exception:
        log.failure("after a sync")


def makeService(options):
    from twisted.internet import reactor

    root = os.path.abspath(options["root"])
    token = None
    try:
        config = load(options)
        os.makedirs(os.path.join(root, ".ppypi"), exist_ok=True)
        if config.zero_config:
            token_path = os.path.join(root, ".ppypi", "upload-token")
            token, created = load_or_create_token(token_path)
            log.info("uploads: username __token__, password in {path}{created}",
                     path=token_path, created=" (created now)" if created else "")
    except ConfigError as e:
        sys.stderr.write(f"ppypi: {e}\n")
        raise SystemExit(2)
    except OSError as e:
        sys.stderr.write(f"ppypi: {e.filename}: {e.strerror}\n")
        raise SystemExit(2)

    pool = ThreadPool(minthreads=1, maxthreads=8, name="ppypi-io")

    def run_in_thread(f, *args, **kwargs):
        return deferToThreadPool(reactor, pool, f, *args, **kwargs)

    try:
        repositories, site, timers = build(options, config, reactor, run_in_thread, token,
                                           after_sync=heap.settle)
    except ConfigError as e:
        sys.stderr.write(f"ppypi: {e}\n")
        raise SystemExit(2)
    except OSError as e:
        sys.stderr.write(f"ppypi: {e.filename}: {e.strerror}\n")
        raise SystemExit(2)

    pool_service = ThreadPoolService(pool)
    service = DaemonService(pool_service, twistd=getattr(options, "parent", None))
    pool_service.setServiceParent(service)
    for timer in timers:
        timer.setServiceParent(service)
    for endpoint in options["listen"]:
        listening = strports.service(endpoint, site)
        listening.setServiceParent(service)
        service.endpoints[listening] = endpoint
    log.info("ppypi serving {repos} from {root}",
             repos=", ".join(r.name for r in repositories), root=options["root"])
    return service
