"""
The daemon's wiring: C{twistd ppypi} options and the service they make.
"""

import math
import os
import sys

from twisted.application import strports
from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool


from . import heap
from .auth import Authenticator, load_or_create_token
from .backends.filesystem import FilesystemBackend
from .backends.github import GitHubBackend
from .backends.github_api import GitHubAPI
from .config import ConfigError, load_admin_secret, load_config
from .metrics import Metrics
from .repository import Repository
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

    synopsis = "--root ROOT [options]"

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
        super().parseOptions(fixed)

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

    if description.startswith("systemd:") and "LISTEN_FDS" not in os.environ:
        # Outside systemd there are no sockets to look up; check the syntax
        # only, and let systemd's own start-up find the descriptor.
        _check_systemd_endpoint(description)
        return
    try:
        endpoint = endpoints.serverFromString(reactor, description)
    except (ValueError, TypeError, KeyError, IndexError, OSError) as e:
        raise usage.UsageError(f"--listen {description!r}: {e or type(e).__name__}") from None
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise usage.UsageError(f"--listen {description!r}: port must be 0-65535")


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

    def __init__(self, pool_service):
        super().__init__()
        self.pool_service = pool_service

    async def _stop(self):
        others = [s for s in reversed(list(self)) if s is not self.pool_service]
        await gatherResults([maybeDeferred(s.stopService) for s in others],
                            consumeErrors=True)
        await maybeDeferred(self.pool_service.stopService)

    def stopService(self):
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stop())


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

    @param http: the treq C{HTTPClient} for GitHub (default: a real one).
    @param after_sync: called after each periodic sync (the daemon settles
        its heap there, see L{ppypi.heap}).
    """
    root = os.path.abspath(options["root"])
    state_root = os.path.join(root, ".ppypi")
    repositories = []
    github = {}
    for rc in config.repositories:
        state_dir = os.path.join(state_root, "repositories", rc.name)
        if rc.type == "github":
            backend = _github_backend(options, rc, state_dir, reactor, run_in_thread, http)
            github[rc.name] = backend.permissions
        else:
            others = [o.path for o in config.repositories
                      if o is not rc and o.type == "filesystem"]
            backend = FilesystemBackend(rc.name, rc.path, state_dir, run_in_thread,
                                        exclude=others)
        stray = backend.prepare()
        if stray:
            log.warn("repository {repo}: removed {count} unfinished uploads left by a crash",
                     repo=rc.name, count=stray)
        repositories.append(Repository(rc, backend, state_dir, run_in_thread, reactor))

    authenticator = Authenticator(
        config, run_in_thread, reactor,
        read_expires=options.get("auth-read-expires", 3600),
        write_expires=options.get("auth-write-expires", 300), token=token, github=github)
    metrics = Metrics(repositories)
    for r in repositories:
        r.metrics = metrics
        api = getattr(r.backend, "api", None)
        if api is not None:
            api.on_retry = lambda name=r.name: metrics.retry(name)
    apps = {
        r.name: RepositoryApp(r, authenticator, run_in_thread, options["extra-index-url"],
                              config.is_reserved, metrics)
        for r in repositories
    }
    spool_dir = os.path.join(state_root, "tmp")
    os.makedirs(spool_dir, exist_ok=True)
    site = IndexSite(Root(apps, repositories, metrics), spool_dir,
                     {r.name: r.config.max_file_bytes for r in repositories},
                     metrics=metrics, timeout=options.get("timeout", HTTP_IDLE_TIMEOUT))
    site.displayTracebacks = False

    timers = []
    for r in repositories:
        timers.append(TimerService(
            r.config.sync_interval,
            lambda r=r: Deferred.fromCoroutine(r.sync()).addCallback(_after, after_sync)))
    timers.append(TimerService(AUTH_MAINTENANCE_INTERVAL,
                               lambda: Deferred.fromCoroutine(authenticator.maintain())))
    for timer in timers:
        timer.clock = reactor
    return repositories, site, timers


def _after(_, hook):
    """Run an after-sync hook; a failure is logged, never stops the syncs
    (a TimerService whose call fails stops calling)."""
    try:
        hook()
    except Exception:
        log.failure("after a sync")


def _github_backend(options, rc, state_dir, reactor, run_in_thread, http):
    if rc.write not in ("github", ()) and rc.admin_secret is None:
        raise ConfigError(options["admin-secret"] or "--admin-secret", rc.name,
                          "a github repository written by local users needs an admin "
                          "secret (a token with push access) to write with")
    if rc.admin_secret is None:
        log.warn("repository {repo}: no admin secret; syncing {owner}/{name} anonymously "
                 "(a private repository will not be readable)",
                 repo=rc.name, owner=rc.owner, name=rc.repo)
    if http is None:
        from treq.client import HTTPClient
        from twisted.web.client import Agent, HTTPConnectionPool
        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor)))
    return GitHubBackend(rc, GitHubAPI(http, rc.api_url, reactor), state_dir,
                         run_in_thread, reactor)


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
    service = DaemonService(pool_service)
    pool_service.setServiceParent(service)
    for timer in timers:
        timer.setServiceParent(service)
    for endpoint in options["listen"]:
        strports.service(endpoint, site).setServiceParent(service)
    log.info("ppypi serving {repos} from {root}",
             repos=", ".join(r.name for r in repositories), root=options["root"])
    return service
