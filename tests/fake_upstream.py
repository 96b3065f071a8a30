"""
A fake upstream Python package index for the tests of a C{type: proxy}
repository: an HTTP/1.1 server on 127.0.0.1 (a free port, its own threads,
no Twisted reactor) that answers as pypi.org (Warehouse) and
files.pythonhosted.org do, sharp edges included, so that the proxy under
test cannot tell it from the real thing.

    fake = FakeUpstream().start()          # or: with FakeUpstream() as fake:
    fake.add("Chain-A", "1.0", requires_dist=["chain-b>=1.0"])
    ... point the proxy at fake.index_url (http://127.0.0.1:PORT/simple/) ...
    fake.stop()

Constructor (all keyword-only but the first):

    FakeUpstream(credentials=None, separate_files_host=False,
                 negotiation="warehouse", last_modified=False, compress=True,
                 retry_after=1)

    credentials          ("user", "pw"): a private upstream; every request to
                         the index (and to its files, when they are on the same
                         origin) needs Basic auth, else 401 with
                         WWW-Authenticate: Basic realm="fake-upstream".
    separate_files_host  files are served by a second server on another port,
                         http://127.0.0.1:PORT2/packages/..., as
                         files.pythonhosted.org is another origin than pypi.org;
                         it asks for no credentials (like a CDN) but records
                         whether any were sent.  Default: on the index's own
                         origin, under /files/packages/...
    negotiation          "warehouse" (default): Warehouse's rules (below);
                         "strict": a PEP 691 server that honours ?format= and
                         answers 406 when nothing offered is acceptable.
    last_modified        pages also carry Last-Modified and honour
                         If-Modified-Since (pypi.org does neither: see below).
    compress             gzip pages for clients that accept it, as Warehouse does.

Content (thread-safe; every change bumps the serial like Warehouse's journal):

    add(project, version, kind="wheel"|"sdist", requires_python=None,
        requires_dist=(), upload_time=None, yanked=None|True|"reason",
        metadata=None, payload=b"", tag="py3-none-any") -> UpstreamFile
        A real wheel/sdist built in memory (tests/corpus.py, or wheel_bytes_with_deps
        / sdist_bytes_with_deps here for Requires-Dist or no Requires-Python).
        metadata: None = as Warehouse (a PEP 658 .metadata for wheels only),
        True = for sdists too (their PKG-INFO), False = none.
        yanked applies to the release (PEP 592 yanks releases, not files).
    remove(project, filename)             the file leaves the page and the files host
    yank(project, version, reason=None)   / unyank(project, version)
    status(project, "active"|"archived"|"quarantined")   PEP 792, as Warehouse
                         maps its lifecycle (quarantined: off /simple/, no files)
    hostile(project, on=True)             that project's pages turn hostile (HOSTILE)
    file(filename) -> UpstreamFile;  files_of(project) -> [UpstreamFile]

Faults (thread-safe, in-process):

    tamper(filename, data=None)   serve other bytes (default: same length, one byte
                                  flipped) while the page keeps the original sha256;
                                  FILENAME.metadata tampers the metadata file;
                                  untamper(filename) undoes it
    fail(count=None, status=503, path=None)   the next `count` requests (None: all,
                                  until heal()) whose path matches the regex answer
                                  `status` (503 and 429 with Retry-After); checked
                                  before anything else, credentials included
    heal()                        drop every fail() rule
    refuse() / accept()           close the listening sockets and cut every open
                                  connection (clients get ECONNREFUSED) / listen
                                  again on the same ports
    stall(path=None, seconds=None, first=None)   hold answers to matching paths:
                                  pages before the status line; files after the
                                  headers and the first `first` bytes (default:
                                  half the body); for `seconds`, or until release()
    release()                     let every held answer go, drop the stall rules
    held                          how many answers are being held now
    slow(bytes_per_second)        throttle every body (None: full speed)

Observation:

    requests        [Seen(method, path, query, origin ("index"|"files"), headers
                    (lower-case names; Authorization's value redacted), auth (the
                    user name presented, or None), status (None until answered),
                    sent (body bytes written), complete)], oldest first
    count(path_regex=None, method=None, origin=None, status=None)
    reset()         forget the recorded requests (the content and faults stay)

Layout.  /simple/ lists every project: HTML links are C{/simple/NORMALISED/}
(absolute paths, text the display name), JSON C{{"name": display, "_last-serial"}}.
/simple/NAME/ lists the files, sorted by (version, filename), each at
C{FILES/packages/AB/CD/REST/FILENAME} where AB CD REST are the blake2b-256 hex
digest of the file (Warehouse's storage path) and FILES is C{files_url}; HTML
links end with C{#sha256=HEX}; JSON carries C{hashes.sha256}. The PEP 658
metadata is C{FILE_URL.metadata}, its sha256 in C{data-core-metadata} and
C{data-dist-info-metadata} (both, PEP 714) and the JSON C{core-metadata} and
C{data-dist-info-metadata}.

Warehouse behaviours followed (warehouse/api/simple.py, packaging/utils.py,
templates/api/simple/*.html, cache/http.py, utils/compression.py, views.py,
and WebOb's acceptparse/response, which Warehouse relies on):
  - content type: WebOb's acceptable_offers over [text/html, v1+html, v1+json],
    highest q first, ties in that order; no acceptable offer, no Accept, or an
    Accept header that does not parse (one bad element spoils it all): text/html.
    Never 406, and ?format= is ignored.
  - text/html is sent as "text/html; charset=utf-8"; the two vnd types bare.
  - JSON: sorted keys, compact separators, ensure_ascii off, trailing newline;
    meta {"api-version": "1.4", "_last-serial"}; project-status; provenance null.
  - a non-normalised NAME that names a project: 301 to the absolute normalised
    URL, query string kept; /simple/NAME (no slash): 301 to /simple/NAME/; an
    unknown project: 404 "404 Not Found" text/plain (normalised or not).
  - Cache-Control "max-age=600, public", Vary "Accept, Accept-Encoding",
    X-PyPI-Last-Serial, CORS headers, on pages and redirects.
  - ETag: WebOb's md5_etag (base64 of the md5 of the body sent, '=' stripped),
    so the gzip variant has its own; If-None-Match compared weakly, "*" never
    matches (WebOb quirk); 304 keeps every header but Content-Type/-Length.
  - no Last-Modified and If-Modified-Since ignored (pypi/warehouse#18484).
  - gzip only when the client accepts it and it is smaller.
Files (files.pythonhosted.org as captured in pypi/warehouse#3108):
Content-Type binary/octet-stream, ETag "MD5HEX", Last-Modified (upload time),
Accept-Ranges bytes (single ranges honoured), Cache-Control max-age=31557600, public.
"""

import base64
import calendar
import dataclasses
import datetime
import gzip
import hashlib
import io
import json
import re
import socket
import tarfile
import threading
import zipfile
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

from packaging.version import InvalidVersion, Version

from .corpus import sdist_bytes, targz, wheel_bytes, wheel_zip

API_VERSION = "1.4"
HTML = "text/html"
V1_HTML = "application/vnd.pypi.simple.v1+html"
V1_JSON = "application/vnd.pypi.simple.v1+json"
OFFERS = (HTML, V1_HTML, V1_JSON)   # Warehouse's order: it breaks ties

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers":
        "Content-Type, If-Match, If-Modified-Since, If-None-Match, If-Unmodified-Since",
    "Access-Control-Allow-Methods": "GET",
    "Access-Control-Max-Age": "86400",
    "Access-Control-Expose-Headers": "X-PyPI-Last-Serial",
}
PAGE_CACHE_CONTROL = "max-age=600, public"
FILE_CACHE_CONTROL = "max-age=31557600, public"   # as captured in pypi/warehouse#3108
FILE_TYPE = "binary/octet-stream"

# What hostile(project) puts on that project's pages: name -> a string that
# is on the hostile page and must never reach a page the proxy renders.
HOSTILE = {
    "script": "<script>window.pwned=1</script>",
    "base": '<base href="https://evil.example/">',
    "javascript_link": "javascript:alert(document.domain)",
    "off_host_link": "https://evil.example/",
    "markup_in_text": "<b onmouseover=",
    "attribute_breakout": "onmouseover",
    "img_onerror": "onerror=",
    "traversal": "../../x.whl",
    "other_project": "someone_else-1.0-py3-none-any.whl",
    "md5_only": "#md5=",
    "extra_key": "x-evil",
}
HUGE_REQUIRES_PYTHON = ">=3.8, " * 15000 + ">=3.8"


def normalize(name):
    """PEP 503."""
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_name(name):
    """The file-name form of a project name (PEP 427/625): lower case, '_'."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _version_key(version):
    # packaging_legacy (Warehouse's sort) puts invalid versions first.
    try:
        return (1, Version(version), "")
    except InvalidVersion:
        return (0, Version("0"), version)


def _escape(text):
    """What Jinja's autoescape (markupsafe) does to a value."""
    return (str(text).replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")
            .replace("'", "&#39;").replace('"', "&#34;"))


def _http_date(dt):
    return formatdate(calendar.timegm(dt.timetuple()), usegmt=True)


def _md5_etag(body):
    """WebOb's Response.md5_etag()."""
    return base64.b64encode(hashlib.md5(body).digest()).decode().strip("=")


# -- wheels and sdists ------------------------------------------------------

def wheel_bytes_with_deps(name, version, requires_python=None, requires_dist=(),
                          payload=b"", tag="py3-none-any"):
    """
    A pure-Python wheel pip installs, like corpus.wheel_bytes but with
    C{Requires-Dist} lines and an optional C{Requires-Python}: one module,
    C{dist_name(name)}, whose C{__version__} is C{version}.
    """
    dist = dist_name(name)
    info = f"{dist}-{version}.dist-info"
    fields = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
              f"Summary: fake upstream package {name}"]
    if requires_python:
        fields.append(f"Requires-Python: {requires_python}")
    fields += [f"Requires-Dist: {r}" for r in requires_dist]
    files = {
        f"{dist}/__init__.py": f"__version__ = '{version}'\n".encode() + payload,
        f"{info}/METADATA": ("\n".join(fields) + f"\n\nLong description of {name}.\n").encode(),
        f"{info}/WHEEL": (f"Wheel-Version: 1.0\nGenerator: ppypi-tests\n"
                          f"Root-Is-Purelib: true\nTag: {tag}\n").encode(),
    }
    return wheel_zip(files, info)


def sdist_bytes_with_deps(name, version, requires_python=None, requires_dist=(), payload=b""):
    """An sdist like corpus.sdist_bytes, with C{Requires-Dist} (PKG-INFO 2.2, all static)."""
    dist = dist_name(name)
    top = f"{dist}-{version}"
    fields = ["Metadata-Version: 2.2", f"Name: {name}", f"Version: {version}",
              f"Summary: fake upstream package {name}"]
    if requires_python:
        fields.append(f"Requires-Python: {requires_python}")
    fields += [f"Requires-Dist: {r}" for r in requires_dist]
    project = [f'name = "{name}"', f'version = "{version}"',
               f'description = "fake upstream package {name}"',
               "dependencies = [" + ", ".join(json.dumps(r) for r in requires_dist) + "]"]
    if requires_python:
        project.append(f'requires-python = "{requires_python}"')
    members = {
        f"{top}/PKG-INFO": ("\n".join(fields) + f"\n\nLong description of {name}.\n").encode(),
        f"{top}/pyproject.toml": ('[build-system]\nrequires = ["setuptools>=64"]\n'
                                  'build-backend = "setuptools.build_meta"\n\n[project]\n'
                                  + "\n".join(project) + "\n").encode(),
        f"{top}/{dist}/__init__.py": f"__version__ = '{version}'\n".encode() + payload,
    }
    return targz(members)


def _wheel_metadata(data, filename):
    """The METADATA of a wheel, as Warehouse extracts it for PEP 658."""
    name, version = filename.split("-")[:2]
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return z.read(f"{name}-{version}.dist-info/METADATA")


def _sdist_metadata(data, filename):
    top = filename[:-len(".tar.gz")]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
        return t.extractfile(f"{top}/PKG-INFO").read()


@dataclasses.dataclass
class UpstreamFile:
    project: str            # normalised
    version: str
    filename: str
    kind: str
    data: bytes
    requires_python: str | None
    upload_time: datetime.datetime   # naive UTC, as Warehouse keeps it
    metadata: bytes | None

    def __post_init__(self):
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.md5 = hashlib.md5(self.data).hexdigest()
        blake = hashlib.blake2b(self.data, digest_size=32).hexdigest()
        # Warehouse's storage path: the content's blake2b-256, split 2/2/60.
        self.path = f"{blake[:2]}/{blake[2:4]}/{blake[4:]}/{self.filename}"
        self.metadata_sha256 = (hashlib.sha256(self.metadata).hexdigest()
                                if self.metadata is not None else None)

    @property
    def size(self):
        return len(self.data)


@dataclasses.dataclass
class _Project:
    name: str               # as first added (the display name)
    files: dict = dataclasses.field(default_factory=dict)     # filename -> UpstreamFile
    yanked: dict = dataclasses.field(default_factory=dict)    # version -> True | reason
    serial: int = 0
    changed: datetime.datetime = None
    status: str = "active"
    hostile: bool = False


@dataclasses.dataclass
class Seen:
    """One request the fake received."""
    method: str
    path: str
    query: str
    origin: str
    headers: dict
    auth: str | None
    status: int | None = None
    sent: int = 0
    complete: bool = False


@dataclasses.dataclass
class _Fail:
    count: int | None
    status: int
    path: re.Pattern | None


@dataclasses.dataclass
class _Stall:
    path: re.Pattern | None
    seconds: float | None
    first: int | None
    released: bool = False


class _Cut(Exception):
    """The connection was cut by refuse()/stop() while we were answering."""


@dataclasses.dataclass
class _Answer:
    status: int
    headers: list
    body: bytes = b""
    is_file: bool = False


# -- content negotiation, as WebOb does it for Warehouse --------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_PARAM = rf"[ \t]*;[ \t]*(?![qQ]=){_TOKEN}=(?:{_TOKEN}|{_QUOTED})"
_WEIGHT = r"[ \t]*;[ \t]*[qQ]=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)"
_EXT = rf"[ \t]*;[ \t]*{_TOKEN}(?:=(?:{_TOKEN}|{_QUOTED}))?"
_RANGE = re.compile(rf"({_TOKEN}/{_TOKEN})((?:{_PARAM})*)(?:{_WEIGHT}((?:{_EXT})*))?")
_ELEMENT = _RANGE.pattern
_ACCEPT = re.compile(rf"^(?:$)|(?:(?:,|(?:{_ELEMENT}))(?:[ \t]*,(?:[ \t]*{_ELEMENT})?)*)$")
_PARAM_PAIR = re.compile(rf"[ \t]*;[ \t]*({_TOKEN})=({_TOKEN}|{_QUOTED})")


def acceptable_offers(accept, offers=OFFERS):
    """
    WebOb's Accept.acceptable_offers: [(offer, q)] best first, ties in the
    order of C{offers}. No header, or one that does not parse as a whole:
    every offer at q=1.
    """
    if accept is None or not _ACCEPT.match(accept):
        return [(o, 1.0) for o in offers]
    ranges = []
    for m in _RANGE.finditer(accept):
        params = tuple((k.lower(), v) for k, v in _PARAM_PAIR.findall(m.group(2)))
        ranges.append((m.group(1).lower(), float(m.group(3)) if m.group(3) else 1.0, params))
    best = {}
    for index, offer in enumerate(offers):
        otype, osub = offer.split("/")
        for media, q, params in ranges:
            rtype, rsub = media.split("/", 1)
            if (rtype, rsub) == (otype, osub):
                if params:      # our offers have no parameters: only a bare range matches
                    continue
                specificity = 3
            elif rsub == "*" and rtype == otype:
                specificity = 2
            elif media == "*/*":
                specificity = 1
            else:
                continue
            if offer in best and specificity <= best[offer][2]:
                continue
            best[offer] = (q, index, specificity)
    found = [(offer, q, index) for offer, (q, index, _) in best.items() if q]
    found.sort(key=lambda t: (t[1], -t[2]), reverse=True)
    return [(offer, q) for offer, q, _ in found]


def _wants_gzip(accept_encoding):
    """
    WebOb's AcceptEncoding.best_match(["identity", "gzip"], "identity") as
    Warehouse's compression tween calls it: an explicit coding beats "*" at
    the same q, identity wins other ties.
    """
    if not accept_encoding:
        return False
    best = {"identity": (-1, 0), "gzip": (-1, 0)}
    for item in accept_encoding.split(","):
        coding, _, rest = item.strip().partition(";")
        coding = coding.strip().lower()
        q = 1.0
        m = re.search(r"q=([0-9.]+)", rest)
        if m:
            try:
                q = float(m.group(1))
            except ValueError:
                return False
        if q <= 0:
            continue
        for offer in best:
            if coding in (offer, "*"):
                best[offer] = max(best[offer], (q, 1 if coding == offer else 0))
    return best["gzip"][0] > 0 and best["gzip"] > best["identity"]


def _etag_matches(if_none_match, etag):
    """WebOb's If-None-Match test: weak comparison, and "*" matches nothing."""
    value = if_none_match.strip()
    if not value or value == "*":
        return False
    tags = [t for _, t in re.findall(r'(W/)?"([^"]*)"', value)] or [value]
    return etag in tags


# -- the server -------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self):
        return "fake-upstream"

    def setup(self):
        super().setup()
        # Headers and body go in separate writes: without this, Nagle's
        # algorithm and delayed ACKs add ~40 ms to every answer on loopback.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._connections.add(self.connection)

    def finish(self):
        self.server.fake._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format, *args):
        pass  # the fake keeps its own record (FakeUpstream.requests)

    def do_GET(self):
        self.server.fake._serve(self, head=False)

    def do_HEAD(self):
        self.server.fake._serve(self, head=True)


class FakeUpstream:
    """See the module docstring."""

    def __init__(self, credentials=None, *, separate_files_host=False, negotiation="warehouse",
                 last_modified=False, compress=True, retry_after=1):
        if negotiation not in ("warehouse", "strict"):
            raise ValueError(negotiation)
        self.credentials = credentials
        self.separate_files_host = separate_files_host
        self.negotiation = negotiation
        self.last_modified = last_modified
        self.compress = compress
        self.retry_after = retry_after
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._projects = {}          # normalised name -> _Project
        self._paths = {}             # storage path -> UpstreamFile
        self._serial = 0
        self._changed = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        self._tampered = {}          # filename (or FILENAME.metadata) -> bytes
        self._fails = []
        self._stalls = []
        self._bps = None
        self._held = 0
        self._log = []
        self._connections = set()
        self._servers = {}           # origin -> _Server
        self._ports = {}             # origin -> port, kept across refuse()/accept()
        self._generation = 0         # bumped by refuse()/stop(): cuts what was running

    # -- life cycle --------------------------------------------------------

    def start(self):
        origins = ["index", "files"] if self.separate_files_host else ["index"]
        for origin in origins:
            self._listen(origin, self._ports.get(origin, 0))
        return self

    def _listen(self, origin, port):
        server = _Server(("127.0.0.1", port), _Handler)
        server.fake = self
        server.origin = origin
        server.generation = self._generation   # refuse() makes it stale: its answers are cut
        self._ports[origin] = server.server_address[1]
        self._servers[origin] = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         name=f"fake-upstream-{origin}", daemon=True).start()

    def refuse(self):
        """Stop listening and cut every open connection."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.shutdown()
            server.server_close()
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def accept(self):
        """Listen again, on the same ports."""
        if not self._servers:
            self.start()

    def stop(self):
        self.refuse()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._ports["index"]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/"

    @property
    def index_url(self):
        return self.url + "simple/"

    @property
    def files_url(self):
        """Where /packages/... is served: FILE URLs are files_url + "packages/" + path."""
        if self.separate_files_host:
            return f"http://127.0.0.1:{self._ports['files']}/"
        return self.url + "files/"

    def file_url(self, filename):
        return self.files_url + "packages/" + quote(self.file(filename).path, safe="/:@&+$,")

    # -- content -----------------------------------------------------------

    def _touch(self, project):
        self._serial += 1
        project.serial = self._serial
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        project.changed = self._changed = now

    def _project(self, name, create=False):
        key = normalize(name)
        project = self._projects.get(key)
        if project is None:
            if not create:
                raise KeyError(f"no project {name!r}")
            project = self._projects[key] = _Project(name=name)
        return project

    def add(self, project, version, kind="wheel", requires_python=None, requires_dist=(),
            upload_time=None, yanked=None, metadata=None, payload=b"", tag="py3-none-any"):
        """Publish one file (see the module docstring); returns its UpstreamFile."""
        dist = dist_name(project)
        requires_dist = tuple(requires_dist)
        if kind == "wheel":
            filename = f"{dist}-{version}-{tag}.whl"
            if requires_dist or requires_python is None or tag != "py3-none-any":
                data = wheel_bytes_with_deps(project, version, requires_python, requires_dist,
                                             payload, tag)
            else:
                data = wheel_bytes(dist, version, requires_python, payload)
            meta = _wheel_metadata(data, filename) if metadata is not False else None
        elif kind == "sdist":
            filename = f"{dist}-{version}.tar.gz"
            if requires_dist or requires_python is None or payload:
                data = sdist_bytes_with_deps(project, version, requires_python, requires_dist,
                                             payload)
            else:
                data = sdist_bytes(dist, version, requires_python)
            # Warehouse extracts metadata from wheels only.
            meta = _sdist_metadata(data, filename) if metadata is True else None
        else:
            raise ValueError(f"kind must be 'wheel' or 'sdist', not {kind!r}")
        if upload_time is None:
            upload_time = datetime.datetime.now(datetime.timezone.utc)
        elif isinstance(upload_time, str):
            upload_time = datetime.datetime.fromisoformat(upload_time.replace("Z", "+00:00"))
        if upload_time.tzinfo is not None:
            upload_time = upload_time.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        with self._lock:
            proj = self._project(project, create=True)
            if filename in proj.files:
                raise ValueError(f"File already exists: {filename}")  # as Warehouse refuses it
            f = UpstreamFile(project=normalize(project), version=version, filename=filename,
                             kind=kind, data=data, requires_python=requires_python,
                             upload_time=upload_time, metadata=meta)
            proj.files[filename] = f
            self._paths[f.path] = f
            if yanked:
                proj.yanked[version] = yanked
            self._touch(proj)
            return f

    def file(self, filename):
        with self._lock:
            for proj in self._projects.values():
                if filename in proj.files:
                    return proj.files[filename]
        raise KeyError(filename)

    def files_of(self, project):
        with self._lock:
            return list(self._project(project).files.values())

    def remove(self, project, filename):
        with self._lock:
            proj = self._project(project)
            f = proj.files.pop(filename)
            self._paths.pop(f.path, None)
            self._touch(proj)

    def yank(self, project, version, reason=None):
        with self._lock:
            proj = self._project(project)
            proj.yanked[version] = reason or True
            self._touch(proj)

    def unyank(self, project, version):
        with self._lock:
            proj = self._project(project)
            proj.yanked.pop(version, None)
            self._touch(proj)

    def status(self, project, status):
        if status not in ("active", "archived", "quarantined"):
            raise ValueError(status)
        with self._lock:
            proj = self._project(project)
            proj.status = status
            self._touch(proj)

    def hostile(self, project, on=True):
        with self._lock:
            proj = self._project(project, create=True)
            proj.hostile = on
            self._touch(proj)

    # -- faults ------------------------------------------------------------

    def tamper(self, filename, data=None):
        with self._lock:
            if filename.endswith(".metadata"):
                original = self.file(filename[:-len(".metadata")]).metadata
            else:
                original = self.file(filename).data
            if data is None:
                middle = len(original) // 2
                data = original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1:]
            self._tampered[filename] = data

    def untamper(self, filename):
        with self._lock:
            self._tampered.pop(filename, None)

    def fail(self, count=None, status=503, path=None):
        if count is not None and count <= 0:
            return
        with self._lock:
            self._fails.append(_Fail(count, status, re.compile(path) if path else None))

    def heal(self):
        with self._lock:
            self._fails.clear()

    def stall(self, path=None, seconds=None, first=None):
        with self._lock:
            self._stalls.append(_Stall(re.compile(path) if path else None, seconds, first))

    def release(self):
        with self._cond:
            for rule in self._stalls:
                rule.released = True
            self._stalls.clear()
            self._cond.notify_all()

    @property
    def held(self):
        with self._lock:
            return self._held

    def slow(self, bytes_per_second):
        with self._lock:
            self._bps = bytes_per_second

    # -- observation -------------------------------------------------------

    @property
    def requests(self):
        with self._lock:
            return list(self._log)

    def count(self, path_regex=None, method=None, origin=None, status=None):
        pattern = re.compile(path_regex) if path_regex else None
        with self._lock:
            return sum(1 for r in self._log
                       if (pattern is None or pattern.search(r.path))
                       and (method is None or r.method == method)
                       and (origin is None or r.origin == origin)
                       and (status is None or r.status == status))

    def reset(self):
        with self._lock:
            self._log.clear()

    # -- answering ---------------------------------------------------------

    def _serve(self, handler, head):
        generation = handler.server.generation
        split = urlsplit(handler.path)
        headers = {}
        for name, value in handler.headers.items():
            name = name.lower()
            if name == "authorization":
                value = value.split(" ", 1)[0] + " <redacted>"
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        user, authorized = self._check_auth(handler.headers.get("Authorization"))
        seen = Seen(handler.command, split.path, split.query, handler.server.origin,
                    headers, user)
        with self._lock:
            self._log.append(seen)
        try:
            answer = self._answer(handler, seen, split, authorized)
            self._send(handler, seen, answer, head, generation)
        except (_Cut, OSError):
            handler.close_connection = True

    def _check_auth(self, header):
        if not header or not header.lower().startswith("basic "):
            return None, False
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True) \
                .decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, False
        return user, self.credentials is not None and (user, password) == tuple(self.credentials)

    def _answer(self, handler, seen, split, authorized):
        with self._lock:
            for rule in self._fails:
                if rule.path is None or rule.path.search(seen.path):
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            self._fails.remove(rule)
                    return self._error(rule.status)
        origin = handler.server.origin
        needs_auth = self.credentials is not None and origin == "index"
        if needs_auth and not authorized:
            body = b"401 Unauthorized\n"
            return _Answer(401, [("WWW-Authenticate", 'Basic realm="fake-upstream"'),
                                 ("Content-Type", "text/plain; charset=utf-8")], body)
        path = unquote(split.path)
        files_prefix = "/packages/" if origin == "files" else "/files/packages/"
        if path.startswith(files_prefix) and (origin == "files" or not self.separate_files_host):
            return self._file(handler, path[len(files_prefix):])
        if origin == "index":
            if path == "/simple":
                return self._redirect(handler, "/simple/", split.query)
            if path == "/simple/":
                return self._page(handler, None, split.query)
            m = re.fullmatch(r"/simple/([^/]+)(/?)", path)
            if m and not m.group(2):
                return self._redirect(handler, path + "/", split.query)
            if m:
                with self._lock:
                    proj = self._projects.get(normalize(m.group(1)))
                    if proj is not None and normalize(m.group(1)) != m.group(1):
                        return self._redirect(handler, f"/simple/{normalize(m.group(1))}/",
                                              split.query)
                    if proj is not None:
                        return self._page(handler, proj, split.query)
        if path.startswith("/simple/"):
            # Warehouse's light 404 for the simple API.
            return _Answer(404, [("Content-Type", "text/plain; charset=UTF-8")], b"404 Not Found")
        return _Answer(404, [("Content-Type", "text/html; charset=UTF-8")],
                       b"<html><body><h1>404 Not Found</h1></body></html>\n")

    def _error(self, status):
        reason = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
                  503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Error")
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if status in (429, 503):
            headers.append(("Retry-After", str(self.retry_after)))
        return _Answer(status, headers, f"{status} {reason}\n".encode())

    def _redirect(self, handler, path, query):
        # Pyramid keeps the query string; WebOb makes the Location absolute.
        host = handler.headers.get("Host") or f"127.0.0.1:{self.port}"
        location = f"http://{host}{quote(path)}" + (f"?{query}" if query else "")
        body = (f"301 Moved Permanently\n\nThe resource has been moved to {location}; "
                f"you should be redirected automatically.\n\n").encode()
        headers = [("Location", location), ("Content-Type", "text/plain; charset=UTF-8"),
                   ("Cache-Control", PAGE_CACHE_CONTROL), ("Vary", "Accept, Accept-Encoding"),
                   *CORS.items()]
        return _Answer(301, headers, body)

    # -- pages -------------------------------------------------------------

    def _content_type(self, handler, query):
        accept = handler.headers.get_all("Accept")
        accept = ", ".join(accept) if accept else None
        if self.negotiation == "strict":
            fmt = re.search(r"(?:^|&)format=([^&]*)", query or "")
            if fmt:
                wanted = unquote(fmt.group(1))  # "+" kept: it is in the media types
                return wanted if wanted in OFFERS else None
            offers = acceptable_offers(accept)
            if accept is not None and not offers:
                return None
            return offers[0][0] if offers else HTML
        offers = acceptable_offers(accept)
        return offers[0][0] if offers else HTML

    def _page(self, handler, proj, query):
        content_type = self._content_type(handler, query)
        if content_type is None:
            body = ("406 Not Acceptable\n\nAvailable: " + ", ".join(OFFERS) + "\n").encode()
            return _Answer(406, [("Content-Type", "text/plain; charset=utf-8"),
                                 ("Vary", "Accept")], body)
        with self._lock:
            if proj is None:
                serial, changed = self._serial, self._changed
                data = self._index_data()
                body = (self._json(data) if content_type == V1_JSON else self._index_html(data))
            else:
                serial, changed = proj.serial, proj.changed
                data = self._detail_data(proj)
                if content_type == V1_JSON:
                    body = self._json(self._hostile_json(proj, data) if proj.hostile else data)
                else:
                    body = self._detail_html(proj, data)
        charset = "; charset=utf-8" if content_type == HTML else ""   # WebOb: text/* only
        headers = [("Content-Type", content_type + charset),
                   ("Cache-Control", PAGE_CACHE_CONTROL), ("Vary", "Accept, Accept-Encoding"),
                   ("X-PyPI-Last-Serial", str(serial)), *CORS.items()]
        if self.compress and _wants_gzip(handler.headers.get("Accept-Encoding")):
            packed = gzip.compress(body, mtime=0)
            if len(packed) < len(body):
                body = packed
                headers.append(("Content-Encoding", "gzip"))
        etag = _md5_etag(body)
        headers.append(("ETag", f'"{etag}"'))
        if self.last_modified:
            headers.append(("Last-Modified", _http_date(changed)))
        if self._not_modified(handler, etag, changed if self.last_modified else None):
            return _Answer(304, [h for h in headers if h[0] not in ("Content-Type",)])
        return _Answer(200, headers, body)

    def _not_modified(self, handler, etag, last_modified):
        inm = handler.headers.get("If-None-Match")
        if inm:
            return _etag_matches(inm, etag)
        ims = handler.headers.get("If-Modified-Since")
        if ims and last_modified is not None:
            try:
                since = parsedate_to_datetime(ims)
            except (TypeError, ValueError):
                return False
            if since.tzinfo is not None:
                since = since.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            return last_modified.replace(microsecond=0) <= since
        return False

    @staticmethod
    def _json(data):
        return (json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           allow_nan=False) + "\n").encode()

    def _index_data(self):
        projects = sorted((p for p in self._projects.values() if p.status != "quarantined"),
                          key=lambda p: normalize(p.name))
        return {"meta": {"api-version": API_VERSION, "_last-serial": self._serial},
                "projects": [{"name": p.name, "_last-serial": p.serial} for p in projects]}

    def _detail_data(self, proj):
        files = [] if proj.status == "quarantined" else sorted(
            proj.files.values(), key=lambda f: (_version_key(f.version), f.filename))
        entries = []
        for f in files:
            yanked = proj.yanked.get(f.version, False)
            metadata = {"sha256": f.metadata_sha256} if f.metadata_sha256 else False
            entries.append({
                "filename": f.filename,
                "url": self.files_url + "packages/" + quote(f.path, safe="/:@&+$,"),
                "hashes": {"sha256": f.sha256},
                "requires-python": f.requires_python or None,
                "size": f.size,
                "upload-time": f.upload_time.isoformat() + "Z",
                "yanked": yanked,
                "data-dist-info-metadata": metadata,
                "core-metadata": metadata,
                "provenance": None,
            })
        return {
            "meta": {"api-version": API_VERSION, "_last-serial": proj.serial},
            "name": normalize(proj.name),
            "project-status": {"status": proj.status},
            "versions": sorted({f.version for f in files}, key=_version_key),
            "files": entries,
        }

    @staticmethod
    def _index_html(data):
        # warehouse/templates/api/simple/index.html, whitespace and all.
        links = "".join(f'<a href="/simple/{_escape(normalize(p["name"]))}/">'
                        f'{_escape(p["name"])}</a>\n    ' for p in data["projects"])
        version = data["meta"]["api-version"]
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n  <head>\n"
                f"    <meta name=\"pypi:repository-version\" content=\"{version}\">\n"
                "    <title>Simple index</title>\n  </head>\n  <body>\n    "
                f"{links}  </body>\n</html>").encode()

    @staticmethod
    def _anchor(f):
        # One line of warehouse/templates/api/simple/detail.html.
        attrs = ""
        if f.get("requires-python"):
            attrs += f'data-requires-python="{_escape(f["requires-python"])}" '
        if f["yanked"]:
            reason = f["yanked"] if isinstance(f["yanked"], str) else ""
            attrs += f'data-yanked="{_escape(reason)}" '
        if f["core-metadata"]:
            digest = _escape(f["core-metadata"]["sha256"])
            attrs += (f'data-dist-info-metadata="sha256={digest}" '
                      f'data-core-metadata="sha256={digest}"')
        return (f'<a href="{_escape(f["url"])}#sha256={_escape(f["hashes"]["sha256"])}" {attrs}>'
                f'{_escape(f["filename"])}</a><br />\n    ')

    def _detail_html(self, proj, data):
        name = _escape(data["name"])
        head_extra, body_extra = "", ""
        if proj.hostile:
            head_extra, body_extra = self._hostile_html(proj)
        links = "".join(self._anchor(f) for f in data["files"])
        version = data["meta"]["api-version"]
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n  <head>\n"
                f"    <meta name=\"pypi:repository-version\" content=\"{version}\">\n"
                f"    <meta name=\"pypi:project-status\" content=\"{_escape(proj.status)}\">\n"
                f"{head_extra}"
                f"    <title>Links for {name}</title>\n  </head>\n  <body>\n"
                f"    <h1>Links for {name}</h1>\n    {links}{body_extra}  </body>\n</html>\n"
                f"<!--SERIAL {data['meta']['_last-serial']}-->").encode()

    # -- hostile pages -----------------------------------------------------

    def _hostile_base(self):
        return self.files_url + "packages/aa/bb/" + "c" * 60 + "/"

    def _hostile_html(self, proj):
        dist = dist_name(proj.name)
        base = self._hostile_base()
        zero = "0" * 64
        head = f"    {HOSTILE['base']}\n"
        lines = [
            HOSTILE["script"],
            f'<a href="{HOSTILE["javascript_link"]}//{dist}-9.9-py3-none-any.whl#sha256={zero}">'
            f"{dist}-9.9-py3-none-any.whl</a><br />",
            f'<a href="{HOSTILE["off_host_link"]}packages/{dist}-9.8-py3-none-any.whl'
            f'#sha256={zero}">'
            f"{dist}-9.8-py3-none-any.whl</a><br />",
            f'<a href="{base}{dist}-9.7.tar.gz#sha256={zero}">'
            f'{dist}-{HOSTILE["markup_in_text"]}"alert(1)">9.7</b>.tar.gz</a><br />',
            # Quotes and '>' inside values: escaped in one, raw in a single-quoted one.
            f'<a href="{base}{dist}-9.6-py3-none-any.whl#sha256={zero}" '
            f'data-requires-python="&gt;=3.8&quot; {HOSTILE["attribute_breakout"]}=&quot;alert(1)" '
            f"data-yanked='he said \"no\" > <img src=x {HOSTILE['img_onerror']}alert(1)>'>"
            f"{dist}-9.6-py3-none-any.whl</a><br />",
            f'<a href="{base}{HOSTILE["traversal"]}#sha256={zero}">'
            f'{HOSTILE["traversal"]}</a><br />',
            f'<a href="{base}{HOSTILE["other_project"]}#sha256={zero}">'
            f'{HOSTILE["other_project"]}</a><br />',
            f'<a href="{base}{dist}-9.5-py3-none-any.whl{HOSTILE["md5_only"]}{"0" * 32}">'
            f"{dist}-9.5-py3-none-any.whl</a><br />",
            f'<a href="{base}{dist}-9.4-py3-none-any.whl#sha256={zero}" '
            f'data-requires-python="{_escape(HUGE_REQUIRES_PYTHON)}" {HOSTILE["extra_key"]}="1">'
            f"{dist}-9.4-py3-none-any.whl</a><br />",
        ]
        return head, "".join(f"    {line}\n" for line in lines)

    def _hostile_json(self, proj, data):
        dist = dist_name(proj.name)
        base = self._hostile_base()
        zero = "0" * 64

        def entry(filename, **extra):
            e = {"filename": filename, "url": f"{base}{filename}", "hashes": {"sha256": zero},
                 "requires-python": None, "size": 1, "upload-time": "2024-01-01T00:00:00Z",
                 "yanked": False, "core-metadata": False, "data-dist-info-metadata": False}
            e.update(extra)
            return e

        data = json.loads(json.dumps(data))
        data["files"] += [
            entry(12345),
            entry(f"{dist}-9.9-py3-none-any.whl",
                  url=f"{HOSTILE['javascript_link']}//{dist}-9.9-py3-none-any.whl"),
            entry(f"{dist}-9.8-py3-none-any.whl",
                  url=f"{HOSTILE['off_host_link']}packages/{dist}-9.8-py3-none-any.whl"),
            entry(f"{dist}-9.7-{HOSTILE['script']}.tar.gz"),
            entry(f"{dist}-9.6-py3-none-any.whl",
                  **{"requires-python": f'>=3.8" {HOSTILE["attribute_breakout"]}="alert(1)',
                     "yanked": f"he said \"no\" > <img src=x {HOSTILE['img_onerror']}alert(1)>"}),
            entry(HOSTILE["traversal"]),
            entry(HOSTILE["other_project"]),
            entry(f"{dist}-9.5-py3-none-any.whl", hashes={"md5": "0" * 32}),
            entry(f"{dist}-9.4-py3-none-any.whl", **{"requires-python": HUGE_REQUIRES_PYTHON}),
            entry(f"{dist}-9.3-py3-none-any.whl", hashes="sha256=" + zero, size="big",
                  yanked=7, **{"upload-time": "yesterday", "requires-python": [">=3"],
                               "core-metadata": "yes", HOSTILE["extra_key"]: "<b>x</b>"}),
            "not an object",
            None,
            42,
        ]
        data["versions"] += [9.9, f"9.7-{HOSTILE['script']}", None]
        data["meta"][HOSTILE["extra_key"]] = {"nested": [HOSTILE["script"]]}
        data[HOSTILE["extra_key"]] = HOSTILE["script"]
        data["__proto__"] = {"polluted": True}
        return data

    # -- files -------------------------------------------------------------

    def _file(self, handler, path):
        is_metadata = path.endswith(".metadata")
        with self._lock:
            f = self._paths.get(path[:-len(".metadata")] if is_metadata else path)
            if f is None or (is_metadata and f.metadata is None):
                # Storage answers 404 for what it does not hold.
                return _Answer(404, [("Content-Type", "application/xml")],
                               b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey"
                               b"</Code></Error>")
            name = f.filename + (".metadata" if is_metadata else "")
            data = self._tampered.get(name, f.metadata if is_metadata else f.data)
            original = f.metadata if is_metadata else f.data
        # The ETag is the stored object's: tampering does not change it.
        etag = f'"{hashlib.md5(original).hexdigest()}"'
        headers = [("Content-Type", FILE_TYPE), ("ETag", etag),
                   ("Last-Modified", _http_date(f.upload_time)),
                   ("Cache-Control", FILE_CACHE_CONTROL), ("Accept-Ranges", "bytes")]
        if self._not_modified(handler, etag.strip('"'), f.upload_time):
            return _Answer(304, headers)
        rng = re.fullmatch(r"bytes=(\d*)-(\d*)", (handler.headers.get("Range") or "").strip())
        if rng and (rng.group(1) or rng.group(2)):
            size = len(data)
            if rng.group(1):
                start = int(rng.group(1))
                end = min(int(rng.group(2)), size - 1) if rng.group(2) else size - 1
            else:
                start, end = max(0, size - int(rng.group(2))), size - 1
            if start >= size or start > end:
                return _Answer(416, [("Content-Range", f"bytes */{size}"),
                                     ("Content-Type", "text/plain")], b"")
            return _Answer(206, headers + [("Content-Range", f"bytes {start}-{end}/{size}")],
                           data[start:end + 1], is_file=True)
        return _Answer(200, headers, data, is_file=True)

    # -- sending -----------------------------------------------------------

    def _cut(self, generation):
        return generation != self._generation

    def _stall_rule(self, path):
        with self._lock:
            for rule in self._stalls:
                if rule.path is None or rule.path.search(path):
                    return rule
        return None

    def _hold(self, rule, generation):
        with self._cond:
            self._held += 1
            try:
                self._cond.wait_for(lambda: rule.released or self._cut(generation),
                                    timeout=rule.seconds)
            finally:
                self._held -= 1
            if self._cut(generation):
                raise _Cut()

    def _write(self, handler, seen, data, generation):
        pos = 0
        while pos < len(data):
            if self._cut(generation):
                raise _Cut()
            bps = self._bps
            step = len(data) - pos if not bps else max(1, bps // 20)
            piece = data[pos:pos + step]
            if bps:
                # Wait before each piece: the whole body takes size / bps.
                with self._cond:
                    if self._cond.wait_for(lambda: self._cut(generation),
                                           timeout=len(piece) / bps):
                        raise _Cut()
            handler.wfile.write(piece)
            pos += len(piece)
            seen.sent += len(piece)

    def _send(self, handler, seen, answer, head, generation):
        rule = self._stall_rule(seen.path)
        streams = answer.is_file and answer.body and not head
        if rule and not streams:
            self._hold(rule, generation)
        if self._cut(generation):
            raise _Cut()
        handler.send_response(answer.status)
        for name, value in answer.headers:
            handler.send_header(name, value)
        if answer.status != 304:
            handler.send_header("Content-Length", str(len(answer.body)))
        handler.end_headers()
        with self._lock:
            seen.status = answer.status
        body = b"" if head or answer.status == 304 else answer.body
        if rule and streams:
            first = rule.first if rule.first is not None else max(1, len(body) // 2)
            self._write(handler, seen, body[:first], generation)
            self._hold(rule, generation)
            body = body[first:]
        self._write(handler, seen, body, generation)
        with self._lock:
            seen.complete = True
