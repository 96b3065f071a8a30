"""
A real S3 for the s3 backend's tests: a C{moto_server} process that checks
SigV4 signatures and IAM policies, and a loopback L{Forwarder} in front of it
that records requests, injects faults and checks presigned URLs.

Fixtures (import them into a test module: C{from .s3_server import
moto_server, s3_bucket, s3_forwarder  # noqa: F401})::

    moto_server   (session) one MotoServer for the whole run
    s3_bucket     a fresh bucket and a user holding exactly
                  ppypi.backends.s3.policy.least_policy(bucket, "pypi/")
    s3_forwarder  a Forwarder in front of moto_server that trusts s3_bucket's
                  user; s3_forwarder.bucket is s3_bucket seen through it

How moto's authentication works, as measured with moto 5.2.5: moto_server
counts the requests that reach its IAM check (AWS API calls, not /moto-api/)
and lets the first INITIAL_NO_AUTH_ACTION_COUNT of them through with any
credentials, unsigned or not; from the next one on, every call must be SigV4
signed by an access key that moto's IAM knows, and is checked against that
user's policies. MotoServer.start spends exactly the SETUP_CALLS = 3 free
calls on an admin user (CreateUser, PutUserPolicy "*" on "*",
CreateAccessKey); with 2 the CreateAccessKey is refused
(InvalidClientTokenId), and with 4 the next call of anyone would be free. Every
bucket and user after that is made by the admin with signed calls, so any
number of buckets cost no free calls and the counter never needs resetting.
(POST /moto-api/reset-auth would reset it: any local process can switch
authentication off, so these are test credentials only.)

Sharp edges of moto (5.2.5) that tests and the backend must allow for:
  - presigned URLs: with authentication on, moto answers them 500 (its IAM
    check wants an Authorization header); the Forwarder checks them instead.
    botocore presigns with SigV2 unless the client's Config says
    signature_version="s3v4"; the Forwarder answers such URLs 400 as the
    SigV4-only regions do.
  - IAM conditions are not evaluated: the s3:prefix condition on ListBucket
    is ignored, so moto lets the least-privilege user list the whole bucket.
    The Forwarder enforces it for the users it trusts (list_prefix).
  - CopyObject checks s3:PutObject on the target only, not s3:GetObject on
    the source: moto copies from outside the prefix; AWS refuses.
  - HeadBucket is checked as the action "s3:HeadBucket" (AWS: s3:ListBucket),
    which no real policy grants: the least-privilege user gets 403.
  - HeadObject errors have no body: botocore reports Code "403"/"404".
  - DeleteObjects (the batch POST ?delete) is checked against the bucket ARN,
    which the least policy's object ARN does not cover: a 200 whose Errors
    hold AccessDenied for every key, and nothing deleted (AWS deletes them).
  - CompleteMultipartUpload with If-None-Match: * on an existing key is a
    412 PreconditionFailed, and the upload stays open, parts and all, until
    it is aborted. moto never answers 409 ConditionalRequestConflict (AWS
    may, for a concurrent write): inject it with Forwarder.fail_next.
Not moto's, but met here: the least policy grants neither ListParts
(s3:ListMultipartUploadParts) nor GetBucketLocation, and moto agrees with AWS
on that; botocore's Config(retries={"max_attempts": N}) counts retries, not
attempts ("total_max_attempts" counts attempts); botocore sends PutObject and
UploadPart with Expect: 100-continue.
"""

import atexit
import calendar
import contextlib
import datetime
import functools
import hmac
import http.client
import http.server
import itertools
import json
import os
import re
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field, replace
from xml.sax.saxutils import escape

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions
import pytest
from botocore.config import Config

from ppypi.backends.s3.policy import least_policy

from .conftest import wait_for

REGION = "us-east-1"
# The free calls MotoServer.start makes before moto enforces SigV4 and IAM.
SETUP_CALLS = 3
ADMIN_POLICY = {"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
# Path-style (the endpoint is an IP address anyway) and SigV4 presigning:
# botocore's default presigner for S3 is still SigV2, which moto ignores.
CLIENT_CONFIG = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                       retries={"mode": "standard", "total_max_attempts": 1},
                       connect_timeout=5, read_timeout=30)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.lru_cache(maxsize=256)
def client(service, endpoint_url, access_key_id, secret_access_key, region=REGION,
           config=CLIENT_CONFIG):
    """
    A boto3 client for C{service} at C{endpoint_url}, with these credentials
    only. Clients are shared (they are thread-safe): making one costs ~50 ms.
    """
    # An explicit session: the machine's ~/.aws and AWS_* settings stay out.
    session = boto3.session.Session(aws_access_key_id=access_key_id,
                                    aws_secret_access_key=secret_access_key,
                                    region_name=region)
    return session.client(service, endpoint_url=endpoint_url, config=config)


@dataclass(frozen=True)
class S3Bucket:
    """
    A bucket, its repository prefix, and the credentials of a user that holds
    exactly the least policy on them. C{admin()} inspects the bucket directly
    on moto (not through any forwarder, so it costs no recorded requests).
    """
    endpoint_url: str
    bucket: str
    prefix: str
    region: str
    access_key_id: str
    secret_access_key: str
    user: str
    write: bool
    moto_url: str = field(repr=False, default="")
    admin_access_key_id: str = field(repr=False, default="")
    admin_secret_access_key: str = field(repr=False, default="")

    def env(self, base=None):
        """
        An environment for a process (twistd) that reaches the bucket with
        botocore's own credential chain: these keys and nothing else. With no
        keys found botocore would ask the EC2 metadata service, off loopback.
        """
        env = dict(os.environ if base is None else base)
        for name in list(env):
            if name.startswith("AWS_"):
                del env[name]
        env.update(AWS_ACCESS_KEY_ID=self.access_key_id,
                   AWS_SECRET_ACCESS_KEY=self.secret_access_key,
                   AWS_DEFAULT_REGION=self.region, AWS_EC2_METADATA_DISABLED="true",
                   AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        return env

    def client(self, **kw):
        """A boto3 S3 client as the least-privilege user, at endpoint_url."""
        return client("s3", kw.pop("endpoint_url", self.endpoint_url), self.access_key_id,
                      self.secret_access_key, self.region, **kw)

    def admin(self):
        """A boto3 S3 client with every right, straight to moto."""
        return client("s3", self.moto_url, self.admin_access_key_id,
                      self.admin_secret_access_key, self.region)

    def through(self, endpoint_url):
        """This bucket, reached at another endpoint (a Forwarder)."""
        return replace(self, endpoint_url=endpoint_url)

    def keys(self, prefix=""):
        """Every key in the bucket under C{prefix} (all of them by default)."""
        pages = self.admin().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, key):
        return self.admin().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def write_object(self, key, data):
        """Put C{data} at C{key} as the admin; returns the ETag."""
        return self.admin().put_object(Bucket=self.bucket, Key=key, Body=data)["ETag"]

    def uploads(self):
        """The multipart uploads in progress: [(key, upload id)]."""
        r = self.admin().list_multipart_uploads(Bucket=self.bucket)
        return [(u["Key"], u["UploadId"]) for u in r.get("Uploads", [])]


class MotoServer:
    """
    A C{python -m moto.server} process on a free loopback port, with SigV4 and
    IAM checked after the admin user is made (see the module docstring).
    """

    region = REGION

    def __init__(self):
        self.proc = None
        self.port = None
        self.admin_access_key_id = None
        self.admin_secret_access_key = None
        self._names = itertools.count(1)
        self._run = uuid.uuid4().hex[:8]
        self._log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)

    @property
    def endpoint_url(self):
        return f"http://127.0.0.1:{self.port}"

    def log(self):
        with open(self._log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def start(self):
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(SETUP_CALLS))
        atexit.register(self.stop)  # should the session end without its teardown
        try:
            # A port picked here may be taken before moto binds it: try another.
            for _ in range(3):
                self.port = free_port()
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                    stdout=self._log, stderr=subprocess.STDOUT, env=env)
                if wait_for(self._answers, timeout=30, what="moto_server to answer") == "up":
                    break
            else:
                raise AssertionError(f"moto_server did not start:\n{self.log()}")
            self._make_admin()
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self):
        if self.proc.poll() is not None:
            return "exited"
        try:
            # /moto-api/ is outside the IAM check: it spends no free call.
            with urllib.request.urlopen(self.endpoint_url + "/moto-api/data.json", timeout=2):
                return "up"
        except (OSError, urllib.error.URLError):
            return None

    def _make_admin(self):
        # The SETUP_CALLS free calls: moto takes any credentials for them.
        iam = client("iam", self.endpoint_url, "bootstrap", "bootstrap")
        iam.create_user(UserName="ppypi-test-admin")
        iam.put_user_policy(UserName="ppypi-test-admin", PolicyName="admin",
                            PolicyDocument=json.dumps(ADMIN_POLICY))
        key = iam.create_access_key(UserName="ppypi-test-admin")["AccessKey"]
        self.admin_access_key_id = key["AccessKeyId"]
        self.admin_secret_access_key = key["SecretAccessKey"]
        # Had moto counted differently, everything below would pass unchecked.
        try:
            client("sts", self.endpoint_url, "bootstrap", "bootstrap").get_caller_identity()
        except botocore.exceptions.ClientError as e:
            if e.response["Error"]["Code"] != "InvalidClientTokenId":
                raise
        else:
            raise AssertionError("moto_server does not check credentials after the setup calls")

    def admin_client(self, service="s3"):
        return client(service, self.endpoint_url, self.admin_access_key_id,
                      self.admin_secret_access_key, self.region)

    def make_bucket(self, bucket=None, prefix="pypi/", write=True, policy=None):
        """
        A new bucket and a new IAM user holding C{policy} (by default exactly
        least_policy(bucket, prefix, write)) with a new access key: four
        signed admin calls, no free ones.
        """
        n = next(self._names)
        bucket = bucket or f"ppypi-test-{self._run}-{n}"
        user = f"ppypi-{self._run}-{n}"
        self.admin_client("s3").create_bucket(Bucket=bucket)
        iam = self.admin_client("iam")
        iam.create_user(UserName=user)
        policy = policy or least_policy(bucket, prefix, write)
        iam.put_user_policy(UserName=user, PolicyName="ppypi-least",
                            PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return S3Bucket(endpoint_url=self.endpoint_url, bucket=bucket, prefix=prefix,
                        region=self.region, access_key_id=key["AccessKeyId"],
                        secret_access_key=key["SecretAccessKey"], user=user, write=write,
                        moto_url=self.endpoint_url,
                        admin_access_key_id=self.admin_access_key_id,
                        admin_secret_access_key=self.admin_secret_access_key)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        self.proc = None
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)


# ---------------------------------------------------------------------------
# The forwarder

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection"}
# Query parameters of a SigV4 presigned URL (they are not forwarded).
PRESIGN_PARAMS = {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                  "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token"}
# What may go with a ListObjects(V2) call: any other key is a subresource
# (uploads, versions, location...) that moto checks as its own action.
LIST_PARAMS = {"list-type", "prefix", "delimiter", "marker", "max-keys", "continuation-token",
               "start-after", "fetch-owner", "encoding-type", "optional-object-attributes"}
MAX_EXPIRES = 7 * 24 * 3600  # S3's limit on X-Amz-Expires
CLOCK_SKEW = 60  # how far in the future an X-Amz-Date may be (S3 allows ~15 min)
CHUNK = 64 * 1024


def error_xml(code, message, **extra):
    """An S3 error document."""
    fields = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in extra.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message>{fields}"
            f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>").encode()


@dataclass
class Request:
    """One request the forwarder received."""
    method: str
    path: str  # as sent: percent-encoded, without the query
    query: str  # as sent
    headers: dict
    time: float  # time.time() on arrival
    status: int = None  # what the client got; None until answered
    # What the forwarder did instead of passing it on as is: the error code
    # of an injected failure ("SlowDown"...), "stall", "presign" (a presigned
    # URL it refused), "list-prefix" (a listing outside the prefix); or None.
    fault: str = None
    presigned: bool = False  # a query signature, SigV4 (X-Amz-Signature) or SigV2 (Signature)

    @property
    def params(self):
        return urllib.parse.parse_qs(self.query, keep_blank_values=True)

    @property
    def key(self):
        """The object key of a path-style request ("" for a bucket)."""
        return urllib.parse.unquote(self.path.lstrip("/").partition("/")[2])


class _Rule:
    """Which requests a fault applies to, and how many more times."""

    def __init__(self, count, method, path, match):
        self.count = count  # None: until cleared
        self.method = method
        self.path = re.compile(path) if isinstance(path, str) else path
        self.match = match

    def applies(self, req):
        if self.count is not None and self.count <= 0:
            return False
        if self.method and req.method != self.method.upper():
            return False
        if self.path is not None and not self.path.search(req.path):
            return False
        if self.match is not None and not self.match(req):
            return False
        if self.count is not None:
            self.count -= 1
        return True


class Forwarder:
    """
    A loopback HTTP server that passes every request to C{upstream} (moto)
    byte for byte, in its own threads: C{requests} records them; C{fail_next},
    C{stall} and C{refuse} inject faults; SigV4 presigned URLs signed by a
    trusted user are checked here and forwarded header-signed; trusted users'
    ListObjects calls must carry their list_prefix (moto ignores the
    least policy's s3:prefix condition).
    """

    def __init__(self, upstream, port=0, clock=time.time):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.port = port
        self.clock = clock  # tests move it to expire presigned URLs
        self.requests = []
        self.bucket = None
        self._trusted = {}  # access key id -> (secret, region, bucket, list_prefix)
        self._lock = threading.Lock()
        self._failures = []
        self._stalls = []
        self._release = threading.Event()
        self._held = 0
        self._server = None
        self._thread = None
        self._sockets = set()

    @property
    def endpoint_url(self):
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle

    def start(self):
        self.accept()
        return self

    def accept(self):
        """Listen (again, on the same port after L{refuse})."""
        if self._server is not None:
            return
        handler = type("Handler", (_Handler,), {"forwarder": self})
        self._server = _Server(("127.0.0.1", self.port), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-forwarder",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def refuse(self):
        """
        Stop listening, so that connections are refused, and cut the open
        ones (a client's pooled keep-alive connections included).
        """
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self):
        self.release()
        self.refuse()

    # -- trust

    def trust(self, access_key_id, secret_access_key, region=REGION, bucket=None,
              list_prefix=None):
        """
        Check presigned URLs signed with this key; with C{bucket} and
        C{list_prefix}, also refuse that key's listings of C{bucket} whose
        prefix does not start with C{list_prefix}.
        """
        with self._lock:
            self._trusted[access_key_id] = (secret_access_key, region, bucket, list_prefix)

    def trust_bucket(self, s3_bucket):
        """Trust an S3Bucket's user as its least policy would; returns it seen through here."""
        self.trust(s3_bucket.access_key_id, s3_bucket.secret_access_key, s3_bucket.region,
                   s3_bucket.bucket, s3_bucket.prefix or None)
        return s3_bucket.through(self.endpoint_url)

    # -- records

    def reset(self):
        """Forget the recorded requests."""
        with self._lock:
            self.requests = []

    def count(self, method=None, path=None, fault=False):
        """How many recorded requests match (C{path}: a regular expression searched)."""
        with self._lock:
            reqs = list(self.requests)
        return sum(1 for r in reqs
                   if (method is None or r.method == method.upper())
                   and (path is None or re.search(path, r.path))
                   and (fault is False or r.fault == fault))

    # -- faults

    def fail_next(self, count=1, status=503, code="SlowDown",
                  message="Please reduce your request rate.", method=None, path=None,
                  match=None):
        """
        Answer the next C{count} requests (those matching C{method}, the
        regular expression C{path} and the predicate C{match}(Request)) with
        C{status} and an S3 error document, without forwarding them.
        """
        with self._lock:
            self._failures.append((_Rule(count, method, path, match), status, code, message))

    def stall(self, count=None, seconds=None, method=None, path=None, match=None):
        """
        Hold matching requests (the next C{count}, or all until
        L{clear_faults}) unanswered until L{release}, or for C{seconds}; then
        they are forwarded as usual.
        """
        with self._lock:
            self._release.clear()
            self._stalls.append((_Rule(count, method, path, match), seconds))

    @property
    def held(self):
        """How many requests are being held by a stall now."""
        with self._lock:
            return self._held

    def release(self):
        """Let every held request go on, and stop stalling."""
        with self._lock:
            self._stalls = []
            self._release.set()

    def clear_faults(self):
        with self._lock:
            self._failures = []
        self.release()

    # -- called by the handler threads

    def _record(self, req):
        with self._lock:
            self.requests.append(req)

    def _failure_for(self, req):
        with self._lock:
            for rule, status, code, message in self._failures:
                if rule.applies(req):
                    return status, code, message
        return None

    def _stall_for(self, req):
        with self._lock:
            for rule, seconds in self._stalls:
                if rule.applies(req):
                    self._held += 1
                    return (seconds, self._release)
        return None

    def _unheld(self):
        with self._lock:
            self._held -= 1

    def _credentials(self, access_key_id):
        with self._lock:
            return self._trusted.get(access_key_id)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # accept() rebinds the port refuse() closed


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects
    forwarder = None

    def setup(self):
        super().setup()
        with self.forwarder._lock:
            self.forwarder._sockets.add(self.connection)

    def finish(self):
        with contextlib.suppress(OSError):
            super().finish()
        with self.forwarder._lock:
            self.forwarder._sockets.discard(self.connection)

    def log_message(self, format, *args):
        pass  # the requests are recorded; stderr stays quiet

    def handle_expect_100(self):
        # Decide before the client sends its body: a fault answers at once,
        # as S3 does, and the client then never sends the body.
        self._req = self._make_record()
        self._fault = self.forwarder._failure_for(self._req)
        if self._fault is None:
            return super().handle_expect_100()
        self._body_pending = True
        return True

    def _make_record(self):
        path, _, query = self.path.partition("?")
        names = {urllib.parse.unquote(p.partition("=")[0]) for p in query.split("&")}
        return Request(method=self.command, path=path, query=query,
                       headers=dict(self.headers.items()), time=time.time(),
                       presigned=bool(names & {"X-Amz-Signature", "Signature"}))

    def _dispatch(self):
        fw = self.forwarder
        req = getattr(self, "_req", None)
        if req is None:
            req = self._make_record()
            fault = fw._failure_for(req)
        else:
            fault = self._fault
        self._req = None
        fw._record(req)
        try:
            if fault is not None:
                status, code, message = fault
                req.fault = code
                self._discard_body()
                return self._error(req, status, code, message)
            stall = fw._stall_for(req)
            if stall is not None:
                seconds, event = stall
                req.fault = "stall"
                try:
                    event.wait(seconds)
                finally:
                    fw._unheld()
            refusal = self._check_list_prefix(req)
            if refusal is not None:
                self._discard_body()
                return self._error(req, *refusal)
            if req.presigned:
                return self._presigned(req)
            self._forward(req, self.path, self._request_headers())
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a stalled request timed out): nothing to answer.
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _dispatch

    # -- request body

    def _body_chunks(self):
        """The request body as it arrives: de-chunked, or Content-Length bytes."""
        if getattr(self, "_body_pending", False):
            self._body_pending = False
            return  # a fault answered before the body was asked for
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    # Trailers (if any) end with an empty line.
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield from self._read(size)
                self.rfile.readline()  # the CRLF after the chunk
        else:
            yield from self._read(int(self.headers.get("Content-Length") or 0))

    def _read(self, size):
        """C{size} bytes of the request body, as they come."""
        while size:
            data = self.rfile.read(min(size, CHUNK))
            if not data:
                raise ConnectionResetError("request body cut short")
            size -= len(data)
            yield data

    def _discard_body(self):
        if getattr(self, "_body_pending", False):
            # The client waits for 100 Continue that will not come: the body
            # would follow later, so this connection cannot be reused.
            self._body_pending = False
            self.close_connection = True
            return
        for _ in self._body_chunks():
            pass

    def _request_headers(self):
        # Host stays as sent: the client signed it, and moto checks it.
        return [(k, v) for k, v in self.headers.items()
                if k.lower() not in HOP_BY_HOP and k.lower() != "expect"]

    # -- answers

    def _error(self, req, status, code, message, **extra):
        body = b"" if self.command == "HEAD" else error_xml(code, message, **extra)
        req.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _forward(self, req, target, headers):
        """Send the request on to moto, streaming its body, and relay the answer."""
        fw = self.forwarder
        conn = http.client.HTTPConnection(fw.upstream.hostname, fw.upstream.port, timeout=60)
        try:
            try:
                conn.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
                chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
                for k, v in headers:
                    conn.putheader(k, v)
                if chunked:
                    conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                for data in self._body_chunks():
                    conn.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                if chunked:
                    conn.send(b"0\r\n\r\n")
                resp = conn.getresponse()
            except (ConnectionRefusedError, http.client.HTTPException, socket.timeout) as e:
                # moto is down or broke off: the client sees a gateway error.
                self.close_connection = True
                return self._error(req, 502, "BadGateway", f"moto_server: {e!r}")
            self._relay(req, resp)
        finally:
            conn.close()

    def _relay(self, req, resp):
        req.status = resp.status
        self.send_response_only(resp.status, resp.reason)
        headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
        length = resp.getheader("Content-Length")
        bodiless = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        rechunk = not bodiless and length is None
        for k, v in headers:
            self.send_header(k, v)
        if rechunk:
            self.send_header("Transfer-Encoding", "chunked")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not bodiless:
            while True:
                data = resp.read1(CHUNK) if hasattr(resp, "read1") else resp.read(CHUNK)
                if not data:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if rechunk else data)
            if rechunk:
                self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- what moto does not check

    def _check_list_prefix(self, req):
        """The least policy's s3:prefix condition on ListBucket, which moto ignores."""
        if req.method != "GET":
            return None
        access_key = _authorization_key(self.headers.get("Authorization", ""))
        trusted = self.forwarder._credentials(access_key) if access_key else None
        if not trusted or not trusted[3]:
            return None
        _, _, bucket, list_prefix = trusted
        if req.path.strip("/") != bucket:
            return None
        params = req.params
        if set(params) - LIST_PARAMS:
            return None
        if params.get("prefix", [""])[0].startswith(list_prefix):
            return None
        req.fault = "list-prefix"
        return 403, "AccessDenied", "Access Denied"

    def _presigned(self, req):
        """Check a presigned URL as S3 would, then forward it header-signed."""
        params = urllib.parse.parse_qs(req.query, keep_blank_values=True)
        one = {k: v[0] for k, v in params.items()}
        req.fault = "presign"
        if "X-Amz-Signature" not in one:
            # SigV2 (Signature=, AWSAccessKeyId=, Expires=): the regions opened
            # since 2014 and every new bucket refuse it.
            self._discard_body()
            return self._error(req, 400, "InvalidRequest",
                               "The authorization mechanism you have provided is not supported. "
                               "Please use AWS4-HMAC-SHA256.")
        problem = self._check_presigned(req, one)
        if problem is not None:
            self._discard_body()
            return self._error(req, *problem[:3], **problem[3])
        req.fault = None
        access_key = one["X-Amz-Credential"].split("/")[0]
        secret, region, _, _ = self.forwarder._credentials(access_key)
        # The query without the signature's own parameters, as sent.
        kept = [p for p in req.query.split("&")
                if urllib.parse.unquote(p.partition("=")[0]) not in PRESIGN_PARAMS]
        target = req.path + ("?" + "&".join(kept) if kept else "")
        up = self.forwarder.upstream
        host = f"{up.hostname}:{up.port}"
        headers = [(k, v) for k, v in self._request_headers()
                   if k.lower() not in ("host", "authorization")]
        areq = botocore.awsrequest.AWSRequest(method=self.command, url=f"http://{host}{target}",
                                              headers=dict(headers))
        areq.headers["Host"] = host
        _UnsignedPayloadAuth(botocore.credentials.Credentials(access_key, secret),
                             "s3", region).add_auth(areq)
        self._forward(req, target, list(areq.headers.items()))

    def _check_presigned(self, req, one):
        """None if the URL is good, else (status, code, message, extra fields)."""
        def malformed(message):
            return 400, "AuthorizationQueryParametersError", message, {}
        try:
            algorithm = one["X-Amz-Algorithm"]
            credential = one["X-Amz-Credential"]
            amz_date = one["X-Amz-Date"]
            expires = int(one["X-Amz-Expires"])
            signed_headers = one["X-Amz-SignedHeaders"].split(";")
            signature = one["X-Amz-Signature"]
        except (KeyError, ValueError):
            return malformed("Query-string authentication version 4 requires the X-Amz-Algorithm, "
                             "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, "
                             "X-Amz-SignedHeaders, and X-Amz-Expires parameters.")
        if algorithm != "AWS4-HMAC-SHA256":
            return malformed("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
        if not 0 < expires <= MAX_EXPIRES:
            return malformed("X-Amz-Expires must be less than a week (in seconds) that is; "
                             "the maximum expires is 604800 seconds")
        parts = credential.split("/")
        try:
            signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            return malformed("X-Amz-Date must be in the ISO8601 Long Format "
                             "\"yyyyMMdd'T'HHmmss'Z'\"")
        trusted = self.forwarder._credentials(parts[0])
        if trusted is None:
            return 403, "InvalidAccessKeyId", \
                "The AWS Access Key Id you provided does not exist in our records.", \
                {"AWSAccessKeyId": parts[0]}
        secret, region, _, _ = trusted
        if len(parts) != 5 or parts[1] != amz_date[:8] or parts[3] != "s3" \
                or parts[4] != "aws4_request":
            return malformed(f"Error parsing the X-Amz-Credential parameter; {credential!r}")
        if parts[2] != region:
            return malformed(f"Error parsing the X-Amz-Credential parameter; the region "
                             f"'{parts[2]}' is wrong; expecting '{region}'")
        # Recompute the signature with botocore's own signer, at the URL's time.
        query = "&".join(p for p in req.query.split("&")
                         if p.partition("=")[0] != "X-Amz-Signature")
        headers = {name: self.headers.get(name, "") for name in signed_headers}
        areq = botocore.awsrequest.AWSRequest(
            method=self.command, url=f"http://{self.headers.get('Host', '')}{req.path}?{query}",
            headers=headers)
        areq.context["timestamp"] = amz_date
        signer = botocore.auth.S3SigV4QueryAuth(
            botocore.credentials.Credentials(parts[0], secret), "s3", region)
        canonical = signer.canonical_request(areq)
        expected = signer.signature(signer.string_to_sign(areq, canonical), areq)
        if "host" not in signed_headers or not _same(expected, signature):
            return 403, "SignatureDoesNotMatch", \
                "The request signature we calculated does not match the signature you " \
                "provided. Check your key and signing method.", \
                {"AWSAccessKeyId": parts[0], "CanonicalRequest": canonical}
        now = self.forwarder.clock()
        if signed_at > now + CLOCK_SKEW:
            return 403, "AccessDenied", "Request is not valid yet", {}
        if now > signed_at + expires:
            return 403, "AccessDenied", "Request has expired", {
                "X-Amz-Expires": expires,
                "Expires": _iso(signed_at + expires), "ServerTime": _iso(now)}
        return None


class _UnsignedPayloadAuth(botocore.auth.S3SigV4Auth):
    """Header signing that leaves the (streamed) body out, as S3 allows."""

    def payload(self, request):
        return botocore.auth.UNSIGNED_PAYLOAD


def _authorization_key(authorization):
    m = re.search(r"Credential=([^/,\s]+)/", authorization)
    return m.group(1) if m else None


def _same(a, b):
    return hmac.compare_digest(a.encode(), b.encode())


def _iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------
# Fixtures

class _Shared:
    """
    One MotoServer per process. A session fixture imported into several test
    modules is a separate fixture in each (pytest caches per definition), so
    the modules share the server through here and the last one stops it.
    """
    server = None
    users = 0
    lock = threading.Lock()

    @classmethod
    def acquire(cls):
        with cls.lock:
            if cls.server is None:
                cls.server = MotoServer().start()
            cls.users += 1
            return cls.server

    @classmethod
    def release(cls):
        with cls.lock:
            cls.users -= 1
            if cls.users == 0:
                cls.server.stop()
                cls.server = None


@pytest.fixture(scope="session")
def moto_server():
    server = _Shared.acquire()
    yield server
    _Shared.release()


@pytest.fixture
def s3_bucket(moto_server):
    """A fresh bucket and a user holding exactly the least policy on it and "pypi/"."""
    return moto_server.make_bucket()


@pytest.fixture
def s3_forwarder(moto_server, s3_bucket):
    """A Forwarder before moto_server; .bucket is s3_bucket reached through it."""
    fw = Forwarder(moto_server.endpoint_url).start()
    fw.bucket = fw.trust_bucket(s3_bucket)
    yield fw
    fw.stop()
