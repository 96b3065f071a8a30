"""In-process servers for fast tests: the real resource tree, driven by StubTreq."""

import base64
import hashlib
import os
import uuid

from treq.testing import StubTreq
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.web.iweb import IBodyProducer

from ppypi.auth import load_or_create_token
from ppypi.config import load_admin_secret, load_config
from ppypi.tap import build

from .corpus import sdist_bytes, wheel_bytes  # noqa: F401 (the tests import them from here)


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def multipart_body(fields, files=(), boundary=None):
    """
    Encode a multipart/form-data body as twine sends it.

    @param fields: [(name, value)] (repeats allowed)
    @param files: [(name, filename, bytes)]
    @return: (content type, body bytes)
    """
    boundary = boundary or uuid.uuid4().hex
    out = []
    for name, value in fields:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                   .encode() + (value if isinstance(value, bytes) else value.encode()) + b"\r\n")
    for name, filename, data in files:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                   f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                   .encode() + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(out)


def upload_fields(name, version, data, filetype="bdist_wheel", **extra):
    """The form fields twine sends with a file."""
    fields = [(":action", "file_upload"), ("protocol_version", "1"), ("name", name),
              ("version", version), ("filetype", filetype), ("pyversion", "py3"),
              ("metadata_version", "2.1"),
              ("sha256_digest", hashlib.sha256(data).hexdigest()),
              ("md5_digest", hashlib.md5(data).hexdigest()),
              ("blake2_256_digest", hashlib.blake2b(data, digest_size=32).hexdigest())]
    # extra: a value replaces the field (None removes it); new names are added.
    known = {k for k, _ in fields}
    fields = [(k, extra.get(k, v)) for k, v in fields]
    fields += [(k, v) for k, v in extra.items() if k not in known]
    return [(k, v) for k, v in fields if v is not None]


def run_now(f, *args, **kwargs):
    """A thread runner that runs in the calling thread (deterministic tests)."""
    return maybeDeferred(f, *args, **kwargs)


class StubHTTP(StubTreq):
    """
    StubTreq that also takes file objects and body producers as request
    bodies (as treq's real HTTPClient does; StubTreq only takes bytes), for
    the GitHub backend. A producer must finish at once (the in-process
    tests run the thread pool's work synchronously).
    """

    def __init__(self, resource):
        super().__init__(resource)
        stub_request = self.request  # StubTreq sets its methods per instance

        def request(method, url, **kwargs):
            data = kwargs.get("data")
            if hasattr(data, "read"):
                kwargs["data"] = data.read()
            elif IBodyProducer.providedBy(data):
                chunks = []
                done = data.startProducing(_Collect(chunks.append))
                assert done.called, "a body producer that did not finish at once"
                kwargs["data"] = b"".join(chunks)
            return stub_request(method, url, **kwargs)

        self.request = request


class _Collect:
    def __init__(self, write):
        self.write = write


def drive(d, clock, step=1.0, limit=600, stubs=()):
    """
    Advance C{clock} until Deferred C{d} fires (backoff and retries wait on
    it), flushing the in-memory connections of C{stubs} (StubTreqs) as it
    goes; return what C{d} fired with (or raise its failure).
    """
    for _ in range(limit):
        for stub in stubs:
            stub.flush()
        if d.called:
            break
        clock.advance(step)
    results = []
    d.addBoth(results.append)
    if not results:
        raise AssertionError("the Deferred did not fire")
    result = results[0]
    from twisted.python.failure import Failure
    if isinstance(result, Failure):
        result.raiseException()
    return result


class InProcess:
    """The daemon's parts, with a Clock for time and StubTreq for HTTP."""

    def __init__(self, root, config_text=None, extra_index_url="https://pypi.example/simple/",
                 http=None, admin_secret_text=None, clock=None, read_expires=3600,
                 write_expires=300):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        if config_text is not None:
            path = os.path.join(self.root, "..", "ppypi-test.yaml")
            with open(path, "w") as f:
                f.write(config_text)
        else:
            path = None
        self.config = load_config(path, self.root)
        if admin_secret_text is not None:
            load_admin_secret(admin_secret_text, self.config, is_text=True)
        self.clock = clock or Clock()
        options = {"root": self.root, "config": path, "extra-index-url": extra_index_url,
                   "admin-secret": None, "auth-read-expires": read_expires,
                   "auth-write-expires": write_expires}
        token = None
        if self.config.zero_config:
            token, _ = load_or_create_token(os.path.join(self.root, ".ppypi", "upload-token"))
        self.repositories, self.site, self.timers = build(
            options, self.config, self.clock, run_now, token, http=http)
        self.treq = StubTreq(self.site.resource)
        # Serve through the daemon's own Site (its request class spools and
        # limits bodies), on the stub's in-memory reactor.
        agent = self.treq._agent
        self.site.reactor = agent._memoryReactor
        agent._serverFactory = self.site

    @property
    def repository(self):
        return self.repositories[0]

    async def sync(self):
        for r in self.repositories:
            await r.sync()

    def start_timers(self):
        for t in self.timers:
            t.startService()

    def stop_timers(self):
        for t in self.timers:
            t.stopService()

    async def get(self, path, headers=None, method="GET", data=None):
        """(response, body bytes) for a request to this server."""
        response = await self.treq.request(method, "http://ppypi.test" + path,
                                           headers=headers, data=data, allow_redirects=False)
        body = await response.content()
        return response, body

    async def upload(self, fields, files, path="/", auth=None, boundary=None):
        ctype, body = multipart_body(fields, files, boundary)
        headers = {"Content-Type": ctype}
        if auth:
            headers["Authorization"] = basic(*auth)
        return await self.get(path, headers, method="POST", data=body)

    def token(self):
        with open(os.path.join(self.root, ".ppypi", "upload-token")) as f:
            return f.read().strip()
