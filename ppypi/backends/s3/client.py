"""
The object store, through AWS's own client: botocore does SigV4, the
credential chain, retries with backoff, checksums and presigning. Every call
here blocks (botocore is synchronous): the backend runs them in the thread
pool, never on the reactor thread.

Failures come out as the backend interface's: L{PreconditionFailed} (a
conditional write lost a race), L{ppypi.backends.interface.RateLimited}
(SlowDown), L{ppypi.backends.interface.BackendError} (anything else: the
store's error code in the message, never a credential).
"""

import datetime
import math
import threading
import time

import botocore.auth
import botocore.session
from botocore.config import Config
from botocore.exceptions import (BotoCoreError, ClientError, NoCredentialsError,
                                 ParamValidationError)

from ..interface import BackendError, RateLimited

# Above this size an upload goes in parts (each read into memory in turn:
# memory per upload is one part, whatever the file's size).
MULTIPART_THRESHOLD = 64 << 20
PART_SIZE = 16 << 20
# botocore's own retries ("standard" mode: timeouts, 5xx, SlowDown, with a
# growing random pause), before a failure reaches the backend.
MAX_ATTEMPTS = 4
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 30
# Writes of one key that S3 answers 409 ConditionalRequestConflict (another
# write in flight) are tried this many times.
CONFLICT_TRIES = 3
# What a client is told to wait when the store said SlowDown (it gives no time).
SLOWDOWN_RETRY_AFTER = 5
# Presigned download URLs: signed at the start of a window of this many
# seconds (the clock rounded down) and valid for two windows, so that one
# file's URL is the same for a window, on every server with the same key,
# and pip's HTTP cache keeps hitting.
URL_WINDOW = 3600
# The signature version our presigned URLs use (registered below).
WINDOWED = "ppypi-s3v4-windowed"


class PreconditionFailed(Exception):
    """A conditional write lost: the object exists (If-None-Match) or changed (If-Match)."""


class NotModified(Exception):
    """A conditional read: the object still has the ETag we have."""


class WindowedQueryAuth(botocore.auth.S3SigV4QueryAuth):
    """
    botocore's presigned-URL signer, with the signing time rounded down to
    the start of a window instead of now: the same key gets the same URL
    for the whole window. Canonicalisation and signing are botocore's.
    """

    def add_auth(self, request):
        if self.credentials is None:
            raise NoCredentialsError()
        start = math.floor(time.time() / URL_WINDOW) * URL_WINDOW
        stamp = datetime.datetime.fromtimestamp(start, datetime.timezone.utc)
        request.context["timestamp"] = stamp.strftime(botocore.auth.SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical_request = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical_request)
        self._inject_signature_to_request(request, self.signature(string_to_sign, request))


# Adding a signature version is additive: nothing else asks for this name.
botocore.auth.AUTH_TYPE_MAPS[WINDOWED + "-query"] = WindowedQueryAuth


def _choose_windowed(signature_version, **kwargs):
    # Only presigned URLs ("...-query"); requests keep botocore's own signer.
    if signature_version and str(signature_version).endswith("-query"):
        return WINDOWED
    return None


def classify(error, what):
    """The interface's failure for a botocore error (never naming a secret)."""
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        code = str(info.get("Code", "")) or "Unknown"
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
            return PreconditionFailed(code)
        if code in ("304", "NotModified") or status == 304:
            return NotModified()
        message = info.get("Message") or ""
        if code in ("SlowDown", "503", "ServiceUnavailable", "RequestLimitExceeded",
                    "TooManyRequests") or status in (429, 503):
            return RateLimited(SLOWDOWN_RETRY_AFTER, f"{what}: the store said {code} "
                                                     "(slow down)")
        return BackendError(f"{what}: {code} {message}".rstrip())
    if isinstance(error, NoCredentialsError):
        return BackendError(f"{what}: no credentials (admin secret or the AWS chain)")
    if isinstance(error, ParamValidationError):
        return BackendError(f"{what}: {error}")
    return BackendError(f"{what}: {type(error).__name__}: {error}")


class StoreClient:
    """
    One bucket and prefix, blocking. Keys given to its methods are relative
    to the prefix.

    @param credentials: {access_key_id, secret_access_key[, session_token]},
        or None for the standard AWS chain.
    """

    def __init__(self, bucket, prefix="", endpoint_url=None, region=None,
                 addressing_style=None, credentials=None, on_retry=None,
                 max_attempts=MAX_ATTEMPTS):
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region = region
        self.addressing_style = addressing_style
        self._credentials = credentials
        self._on_retry = on_retry or (lambda: None)
        self.max_attempts = max_attempts
        self._client = None
        self._lock = threading.Lock()
        # Requests made, by operation (for /health and the tests' counts).
        self.calls = {}
        # The store's last failure, until a request succeeds.
        self.failing = None

    @property
    def client(self):
        # Made on first use, in a thread (loading botocore's models takes a while).
        with self._lock:
            if self._client is None:
                self._client = self._make()
            return self._client

    def _make(self):
        session = botocore.session.get_session()
        s3 = {}
        if self.addressing_style:
            s3["addressing_style"] = self.addressing_style
        config = Config(
            region_name=self.region, s3=s3 or None, connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT, signature_version="s3v4",
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
            # Checksums only where S3 requires them: MinIO, R2 and older
            # Ceph do not all know the newer default trailing checksums.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=20)
        kwargs = {}
        if self._credentials:
            kwargs = {"aws_access_key_id": self._credentials["access_key_id"],
                      "aws_secret_access_key": self._credentials["secret_access_key"],
                      "aws_session_token": self._credentials.get("session_token")}
        client = session.create_client("s3", endpoint_url=self.endpoint_url, config=config,
                                       **kwargs)
        client.meta.events.register("choose-signer.s3.GetObject", _choose_windowed)
        client.meta.events.register("before-send.s3", self._count)
        return client

    def _count(self, request, event_name="", **kwargs):
        operation = event_name.rsplit(".", 1)[-1] or "unknown"
        self.calls[operation] = self.calls.get(operation, 0) + 1
        if request.context.get("retries", {}).get("attempt", 1) > 1:
            self._on_retry()

    def key(self, name):
        return self.prefix + name

    def _call(self, what, operation, missing=False, **kwargs):
        """
        One operation. With C{missing}, a 404 gives None. The store's
        failures (not a lost precondition) are remembered in C{failing}
        until a request succeeds: a redirect into a store known to be down
        would only fail later, at the client.
        """
        try:
            answer = getattr(self.client, operation)(Bucket=self.bucket, **kwargs)
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if missing and (status == 404 or
                            e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")):
                self.failing = None
                return None
            error = classify(e, what)
            self.failing = error if isinstance(error, BackendError) else None
            raise error from None
        except BotoCoreError as e:
            self.failing = classify(e, what)
            raise self.failing from None
        self.failing = None
        return answer

    # -- objects

    def get(self, name, etag=None):
        """
        (bytes, etag) of an object, or None if there is none.

        @raise NotModified: it still has C{etag}.
        """
        kwargs = {"IfNoneMatch": etag} if etag else {}
        answer = self._call(f"GET {self.key(name)}", "get_object", missing=True,
                            Key=self.key(name), **kwargs)
        if answer is None:
            return None
        try:
            with answer["Body"] as body:
                return body.read(), answer["ETag"]
        except (BotoCoreError, OSError) as e:
            self.failing = classify(e, f"GET {self.key(name)}")
            raise self.failing from None

    def put(self, name, data, if_none_match=False, if_match=None,
            content_type="application/json", cache_control=None):
        """
        Write an object (bytes or a file object): only if none exists
        (C{if_none_match}), or only if it still has ETag C{if_match}.
        Return its new ETag.

        @raise PreconditionFailed: the condition did not hold.
        """
        kwargs = {"ContentType": content_type}
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match:
            kwargs["IfMatch"] = if_match
        if cache_control:
            kwargs["CacheControl"] = cache_control
        answer = self._call(f"PUT {self.key(name)}", "put_object", Key=self.key(name),
                            Body=data, **kwargs)
        return answer.get("ETag")

    def put_file(self, name, path, size, content_type, cache_control=None):
        """
        Write a file once (If-None-Match: *), streamed from disk: one PUT,
        or in parts above L{MULTIPART_THRESHOLD}.

        @return: True if written, False if the object was there already.
        """
        for attempt in range(CONFLICT_TRIES):
            try:
                if size <= MULTIPART_THRESHOLD:
                    with open(path, "rb") as f:
                        self.put(name, f, if_none_match=True, content_type=content_type,
                                 cache_control=cache_control)
                else:
                    self._put_parts(name, path, content_type, cache_control)
            except PreconditionFailed as e:
                if str(e) != "ConditionalRequestConflict":
                    return False  # 412: there already (the same bytes: the key says so)
                # 409: another write of the key was in flight; AWS says to try again.
                if attempt == CONFLICT_TRIES - 1:
                    raise BackendError(f"PUT {self.key(name)}: ConditionalRequestConflict "
                                       f"{CONFLICT_TRIES} times") from None
                continue
            return True

    def _put_parts(self, name, path, content_type, cache_control):
        key = self.key(name)
        kwargs = {"ContentType": content_type}
        if cache_control:
            kwargs["CacheControl"] = cache_control
        started = self._call(f"upload {key}", "create_multipart_upload", Key=key, **kwargs)
        upload_id = started["UploadId"]
        try:
            parts = []
            with open(path, "rb") as f:
                number = 1
                while True:
                    chunk = f.read(PART_SIZE)
                    if not chunk:
                        break
                    answer = self._call(f"upload {key} part {number}", "upload_part",
                                        Key=key, UploadId=upload_id, PartNumber=number,
                                        Body=chunk)
                    parts.append({"ETag": answer["ETag"], "PartNumber": number})
                    number += 1
            self._call(f"complete {key}", "complete_multipart_upload", Key=key,
                       UploadId=upload_id, MultipartUpload={"Parts": parts}, IfNoneMatch="*")
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                   UploadId=upload_id)
            except (ClientError, BotoCoreError):
                pass  # a later cleanup aborts it
            raise

    def delete(self, name):
        self._call(f"DELETE {self.key(name)}", "delete_object", Key=self.key(name))

    def open(self, name):
        """
        A streaming body of the object (read it in the thread pool; close
        it), or None if there is none.
        """
        answer = self._call(f"GET {self.key(name)}", "get_object", missing=True,
                            Key=self.key(name))
        return None if answer is None else answer["Body"]

    def list(self, under):
        """Every object below C{under}: [(name, etag, last modified epoch, size)]."""
        found = []
        token = None
        while True:
            kwargs = {"Prefix": self.key(under)}
            if token:
                kwargs["ContinuationToken"] = token
            answer = self._call(f"LIST {self.key(under)}", "list_objects_v2", **kwargs)
            for item in answer.get("Contents", []):
                found.append((item["Key"][len(self.prefix):], item.get("ETag"),
                              item["LastModified"].timestamp(), item.get("Size", 0)))
            if not answer.get("IsTruncated"):
                return found
            token = answer.get("NextContinuationToken")

    def unfinished_uploads(self):
        """Multipart uploads begun below the prefix: [(key, upload id, started epoch)]."""
        found = []
        kwargs = {"Prefix": self.prefix}
        while True:
            answer = self._call("LIST uploads", "list_multipart_uploads", **kwargs)
            for item in answer.get("Uploads", []):
                found.append((item["Key"], item["UploadId"], item["Initiated"].timestamp()))
            if not answer.get("IsTruncated"):
                return found
            kwargs.update(KeyMarker=answer.get("NextKeyMarker"),
                          UploadIdMarker=answer.get("NextUploadIdMarker"))

    def abort(self, key, upload_id):
        self._call(f"abort {key}", "abort_multipart_upload", Key=key, UploadId=upload_id)

    def presign(self, name, filename=None):
        """
        A presigned GET URL for an object, the same for a whole
        L{URL_WINDOW} (see L{WindowedQueryAuth}), valid at least one more.
        """
        try:
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self.key(name)},
                ExpiresIn=2 * URL_WINDOW)
        except (ClientError, BotoCoreError) as e:
            raise classify(e, f"presign {self.key(name)}") from None
