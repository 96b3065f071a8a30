"""
The S3 test infrastructure itself: moto_server really checks signatures, IAM
policies and conditional writes, and the Forwarder records, fails, refuses,
stalls, streams and checks presigned URLs as documented in tests/s3_server.py.
"""

import http.client
import http.server
import socket
import threading
import time
import urllib.parse

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions
import pytest
from botocore.config import Config

from .conftest import get, wait_for
from .s3_server import (CLIENT_CONFIG, SETUP_CALLS, Forwarder, client, moto_server,  # noqa: F401
                        s3_bucket, s3_forwarder)


def error_of(call, *args, **kwargs):
    """(HTTP status, S3 error code) of a call that must fail."""
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call(*args, **kwargs)
    r = info.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def xml_code(body):
    return body.decode().partition("<Code>")[2].partition("</Code>")[0]


# -- moto_server

def test_setup_spent_the_free_calls(moto_server):
    """After the admin is made, moto refuses unknown keys: the N free calls are gone."""
    assert SETUP_CALLS == 3
    anyone = client("s3", moto_server.endpoint_url, "AKIANOBODY", "x" * 40)
    assert error_of(anyone.list_buckets) == (403, "InvalidAccessKeyId")
    iam = client("iam", moto_server.endpoint_url, "AKIANOBODY", "x" * 40)
    assert error_of(iam.create_user, UserName="intruder")[0] == 403


def test_wrong_secret_is_refused(s3_bucket):
    wrong = client("s3", s3_bucket.endpoint_url, s3_bucket.access_key_id, "x" * 40)
    assert error_of(wrong.get_object, Bucket=s3_bucket.bucket, Key="pypi/a") == \
        (403, "SignatureDoesNotMatch")
    assert error_of(wrong.put_object, Bucket=s3_bucket.bucket, Key="pypi/a", Body=b"x") == \
        (403, "SignatureDoesNotMatch")
    assert s3_bucket.keys() == []


def test_buckets_are_fresh(moto_server, s3_bucket):
    other = moto_server.make_bucket()
    assert other.bucket != s3_bucket.bucket and other.access_key_id != s3_bucket.access_key_id
    # Each user holds the least policy on its own bucket only.
    s3_bucket.client().put_object(Bucket=s3_bucket.bucket, Key="pypi/a", Body=b"a")
    assert error_of(other.client().get_object, Bucket=s3_bucket.bucket, Key="pypi/a") == \
        (403, "AccessDenied")


def test_conditional_puts(s3_bucket):
    s3, bucket = s3_bucket.client(), s3_bucket.bucket
    etag = s3.put_object(Bucket=bucket, Key="pypi/k", Body=b"1", IfNoneMatch="*")["ETag"]
    assert error_of(s3.put_object, Bucket=bucket, Key="pypi/k", Body=b"2", IfNoneMatch="*") == \
        (412, "PreconditionFailed")
    newer = s3.put_object(Bucket=bucket, Key="pypi/k", Body=b"3", IfMatch=etag)["ETag"]
    assert error_of(s3.put_object, Bucket=bucket, Key="pypi/k", Body=b"4", IfMatch=etag) == \
        (412, "PreconditionFailed")
    # If-Match on a missing key: 404, as on AWS.
    assert error_of(s3.put_object, Bucket=bucket, Key="pypi/new", Body=b"5", IfMatch=newer) == \
        (404, "NoSuchKey")
    assert s3_bucket.read("pypi/k") == b"3"
    assert s3_bucket.keys() == ["pypi/k"]


def test_least_privilege(s3_bucket):
    s3, bucket = s3_bucket.client(), s3_bucket.bucket
    s3_bucket.write_object("other/secret", b"secret")
    s3.put_object(Bucket=bucket, Key="pypi/mine", Body=b"mine")
    assert s3.get_object(Bucket=bucket, Key="pypi/mine")["Body"].read() == b"mine"
    s3.delete_object(Bucket=bucket, Key="pypi/mine")
    assert error_of(s3.get_object, Bucket=bucket, Key="other/secret") == (403, "AccessDenied")
    assert error_of(s3.head_object, Bucket=bucket, Key="other/secret") == (403, "403")
    assert error_of(s3.put_object, Bucket=bucket, Key="other/x", Body=b"x") == \
        (403, "AccessDenied")
    assert error_of(s3.delete_object, Bucket=bucket, Key="other/secret") == \
        (403, "AccessDenied")
    assert error_of(s3.list_buckets) == (403, "AccessDenied")
    assert error_of(s3.create_bucket, Bucket=bucket + "-2") == (403, "AccessDenied")
    # A missing key in the prefix is a 404, not a 403: the user may list it.
    assert error_of(s3.get_object, Bucket=bucket, Key="pypi/none") == (404, "NoSuchKey")
    assert s3_bucket.keys() == ["other/secret"]


def test_read_only_user(moto_server):
    ro = moto_server.make_bucket(write=False)
    ro.write_object("pypi/a", b"a")
    s3 = ro.client()
    assert s3.get_object(Bucket=ro.bucket, Key="pypi/a")["Body"].read() == b"a"
    assert error_of(s3.put_object, Bucket=ro.bucket, Key="pypi/b", Body=b"b") == \
        (403, "AccessDenied")
    assert error_of(s3.delete_object, Bucket=ro.bucket, Key="pypi/a") == (403, "AccessDenied")


def test_moto_sharp_edges(s3_bucket):
    """
    Where moto 5.2.5 departs from AWS for the least policy (documented in
    tests/s3_server.py): if one of these starts failing, moto changed and
    the docstring there is out of date.
    """
    s3, bucket = s3_bucket.client(), s3_bucket.bucket
    s3_bucket.write_object("other/secret", b"secret")
    s3.put_object(Bucket=bucket, Key="pypi/a", Body=b"a")
    # The s3:prefix condition is ignored (AWS: AccessDenied).
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="other/")["Contents"]
    assert [o["Key"] for o in listed] == ["other/secret"]
    # CopyObject does not check s3:GetObject on the source (AWS: AccessDenied).
    s3.copy_object(Bucket=bucket, Key="pypi/copy",
                   CopySource={"Bucket": bucket, "Key": "other/secret"})
    assert s3_bucket.read("pypi/copy") == b"secret"
    # HeadBucket wants "s3:HeadBucket" (AWS: s3:ListBucket, which the user has).
    assert error_of(s3.head_bucket, Bucket=bucket) == (403, "403")
    # DeleteObjects is checked on the bucket ARN: 200 with a per-key
    # AccessDenied, and nothing is deleted (AWS deletes it).
    errors = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "pypi/a"}]})["Errors"]
    assert [(e["Key"], e["Code"]) for e in errors] == [("pypi/a", "AccessDenied")]
    assert "pypi/a" in s3_bucket.keys()


# -- the forwarder

def test_forwarder_counts_requests(s3_forwarder):
    b = s3_forwarder.bucket
    s3 = b.client()
    s3.put_object(Bucket=b.bucket, Key="pypi/a", Body=b"a" * 1000)
    s3.get_object(Bucket=b.bucket, Key="pypi/a")["Body"].read()
    s3.list_objects_v2(Bucket=b.bucket, Prefix="pypi/")
    assert [(r.method, r.key, r.status) for r in s3_forwarder.requests] == [
        ("PUT", "pypi/a", 200), ("GET", "pypi/a", 200), ("GET", "", 200)]
    assert s3_forwarder.count("GET") == 2
    assert s3_forwarder.count(path=r"/pypi/a$") == 2
    assert s3_forwarder.requests[2].params["prefix"] == ["pypi/"]
    assert s3_forwarder.requests[0].time <= s3_forwarder.requests[1].time
    s3_forwarder.reset()
    assert s3_forwarder.requests == []
    s3.head_object(Bucket=b.bucket, Key="pypi/a")
    assert s3_forwarder.count() == 1


def test_forwarder_streams_large_bodies(s3_forwarder):
    b = s3_forwarder.bucket
    data = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB, not a multiple of the chunk size
    b.client().put_object(Bucket=b.bucket, Key="pypi/big", Body=data)
    assert b.read("pypi/big") == data
    assert b.client().get_object(Bucket=b.bucket, Key="pypi/big")["Body"].read() == data
    ranged = b.client().get_object(Bucket=b.bucket, Key="pypi/big", Range="bytes=10-19")
    assert ranged["Body"].read() == data[10:20]
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206


def test_forwarder_streams_chunked_requests(s3_forwarder):
    """A request body sent chunked reaches moto whole (re-chunked on the way)."""
    b, fw = s3_forwarder.bucket, s3_forwarder
    body = b"chunked body " * 10000
    url = f"{fw.endpoint_url}/{b.bucket}/pypi/chunked"
    areq = botocore.awsrequest.AWSRequest(method="PUT", url=url, data=body)
    botocore.auth.S3SigV4Auth(botocore.credentials.Credentials(b.access_key_id,
                                                               b.secret_access_key),
                              "s3", b.region).add_auth(areq)
    conn = http.client.HTTPConnection("127.0.0.1", fw.port, timeout=10)
    try:
        conn.request("PUT", f"/{b.bucket}/pypi/chunked", body=iter([body[:5000], body[5000:]]),
                     headers=dict(areq.headers.items()), encode_chunked=True)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    finally:
        conn.close()
    assert fw.requests[-1].headers.get("Transfer-Encoding") == "chunked"
    assert b.read("pypi/chunked") == body


def test_forwarder_rechunks_responses_without_length():
    """An upstream answer without Content-Length reaches the client whole, chunked."""
    class Upstream(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, *args):
            pass

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    fw = Forwarder(f"http://127.0.0.1:{upstream.server_address[1]}").start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", fw.port, timeout=10)
        for _ in range(2):  # twice on one keep-alive connection
            conn.request("GET", "/x")
            resp = conn.getresponse()
            assert resp.getheader("Transfer-Encoding") == "chunked"
            assert resp.read() == b"hello chunked world"
        conn.close()
    finally:
        fw.stop()
        upstream.shutdown()
        upstream.server_close()


def test_slowdown(s3_forwarder):
    b, fw = s3_forwarder.bucket, s3_forwarder
    s3 = b.client()
    fw.fail_next(1)
    assert error_of(s3.get_object, Bucket=b.bucket, Key="pypi/a") == (503, "SlowDown")
    assert error_of(s3.get_object, Bucket=b.bucket, Key="pypi/a") == (404, "NoSuchKey")
    # Only PUTs, twice; GETs go through meanwhile. botocore sends PutObject
    # with Expect: 100-continue, so the body is never sent.
    fw.fail_next(2, method="PUT")
    assert error_of(s3.put_object, Bucket=b.bucket, Key="pypi/a", Body=b"a" * 100000) == \
        (503, "SlowDown")
    assert error_of(s3.get_object, Bucket=b.bucket, Key="pypi/a") == (404, "NoSuchKey")
    assert error_of(s3.put_object, Bucket=b.bucket, Key="pypi/a", Body=b"a") == (503, "SlowDown")
    s3.put_object(Bucket=b.bucket, Key="pypi/a", Body=b"a")
    assert [(r.method, r.status, r.fault) for r in fw.requests] == [
        ("GET", 503, "SlowDown"), ("GET", 404, None), ("PUT", 503, "SlowDown"),
        ("GET", 404, None), ("PUT", 503, "SlowDown"), ("PUT", 200, None)]
    assert fw.requests[2].headers.get("Expect") == "100-continue"
    # botocore's standard retries ride over a SlowDown.
    fw.fail_next(1, path=r"/pypi/a$", match=lambda r: r.method == "GET")
    retrying = b.client(config=CLIENT_CONFIG.merge(Config(retries={"mode": "standard",
                                                                    "total_max_attempts": 3})))
    assert retrying.get_object(Bucket=b.bucket, Key="pypi/a")["Body"].read() == b"a"
    assert fw.count(fault="SlowDown") == 4


def test_slowdown_raw(s3_forwarder):
    """The injected answer is S3's: status and XML error code; HEAD has no body."""
    fw = s3_forwarder
    fw.fail_next(2, status=500, code="InternalError", message="We encountered an internal error.")
    status, headers, body = get(fw.endpoint_url + "/any/key")
    assert (status, xml_code(body)) == (500, "InternalError")
    assert headers["Content-Type"] == "application/xml"
    status, headers, body = get(fw.endpoint_url + "/any/key", method="HEAD")
    assert (status, body) == (500, b"")


def test_refused_connections(s3_forwarder):
    b, fw = s3_forwarder.bucket, s3_forwarder
    s3 = b.client()
    s3.put_object(Bucket=b.bucket, Key="pypi/a", Body=b"a")  # leaves a pooled connection
    port = fw.port
    fw.refuse()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        s3.get_object(Bucket=b.bucket, Key="pypi/a")
    fw.accept()
    assert fw.port == port
    assert s3.get_object(Bucket=b.bucket, Key="pypi/a")["Body"].read() == b"a"


def test_stall_until_released(s3_forwarder):
    b, fw = s3_forwarder.bucket, s3_forwarder
    s3 = b.client()
    s3.put_object(Bucket=b.bucket, Key="pypi/a", Body=b"a")
    fw.stall(method="GET")
    got = []
    reader = threading.Thread(target=lambda: got.append(
        s3.get_object(Bucket=b.bucket, Key="pypi/a")["Body"].read()))
    reader.start()
    wait_for(lambda: fw.held == 1, what="the GET to be held")
    s3.head_object(Bucket=b.bucket, Key="pypi/a")  # others pass meanwhile
    assert got == [] and reader.is_alive()
    fw.release()
    reader.join(10)
    assert got == [b"a"] and fw.held == 0
    assert [r.fault for r in fw.requests if r.method == "GET"] == ["stall"]


def test_stall_for_a_while(s3_forwarder):
    b, fw = s3_forwarder.bucket, s3_forwarder
    fw.stall(count=1, seconds=0.3)
    started = time.monotonic()
    assert error_of(b.client().get_object, Bucket=b.bucket, Key="pypi/a") == (404, "NoSuchKey")
    assert time.monotonic() - started >= 0.3
    # A client that gives up sees a timeout; the forwarder carries on.
    fw.stall(count=1, seconds=5)
    impatient = b.client(config=CLIENT_CONFIG.merge(Config(read_timeout=0.3)))
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        impatient.get_object(Bucket=b.bucket, Key="pypi/a")
    fw.release()
    assert error_of(b.client().get_object, Bucket=b.bucket, Key="pypi/a") == (404, "NoSuchKey")


def test_list_prefix_enforced(s3_forwarder):
    """The forwarder applies the least policy's s3:prefix condition that moto ignores."""
    b = s3_forwarder.bucket
    s3 = b.client()
    s3.put_object(Bucket=b.bucket, Key="pypi/a", Body=b"a")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=b.bucket, Prefix="pypi/")["Contents"]] \
        == ["pypi/a"]
    assert s3.list_objects(Bucket=b.bucket, Prefix="pypi/a")["Contents"][0]["Key"] == "pypi/a"
    assert error_of(s3.list_objects_v2, Bucket=b.bucket) == (403, "AccessDenied")
    assert error_of(s3.list_objects_v2, Bucket=b.bucket, Prefix="pyp") == (403, "AccessDenied")
    assert error_of(s3.list_objects_v2, Bucket=b.bucket, Prefix="other/") == (403, "AccessDenied")
    assert s3_forwarder.count(fault="list-prefix") == 3
    # Listing uploads has no condition key.
    s3.list_multipart_uploads(Bucket=b.bucket, Prefix="pypi/")
    s3.list_multipart_uploads(Bucket=b.bucket)


# -- presigned URLs

def presign(bucket, key, expires=60, **kw):
    return bucket.client().generate_presigned_url(
        "get_object", Params={"Bucket": bucket.bucket, "Key": key, **kw}, ExpiresIn=expires)


def test_presigned_get(s3_forwarder):
    b, fw = s3_forwarder.bucket, s3_forwarder
    b.write_object("pypi/pkg 1+2.whl", b"wheel bytes")
    url = presign(b, "pypi/pkg 1+2.whl")
    assert url.startswith(fw.endpoint_url) and "X-Amz-Signature=" in url
    status, headers, body = get(url)
    assert (status, body) == (200, b"wheel bytes")
    assert fw.requests[-1].presigned and fw.requests[-1].status == 200
    status, headers, body = get(url, headers={"Range": "bytes=0-4"})
    assert (status, body) == (206, b"wheel")
    # Response overrides are signed parameters and reach moto.
    url = presign(b, "pypi/pkg 1+2.whl", ResponseContentDisposition="attachment")
    status, headers, body = get(url)
    assert (status, headers["Content-Disposition"]) == (200, "attachment")
    # Missing and forbidden keys: moto's answers, for the signing user.
    assert get(presign(b, "pypi/missing"))[0] == 404
    b.write_object("other/secret", b"secret")
    status, _, body = get(presign(b, "other/secret"))
    assert (status, xml_code(body)) == (403, "AccessDenied")


def test_presigned_get_refused(s3_forwarder):
    b, fw = s3_forwarder.bucket, s3_forwarder
    b.write_object("pypi/a.whl", b"a")
    b.write_object("pypi/b.whl", b"b")
    url = presign(b, "pypi/a.whl")
    parts = urllib.parse.urlsplit(url)

    def code(u):
        status, _, body = get(u)
        return status, xml_code(body)

    signature = urllib.parse.parse_qs(parts.query)["X-Amz-Signature"][0]
    tampered = url.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    assert code(tampered) == (403, "SignatureDoesNotMatch")
    assert code(url.replace("/pypi/a.whl?", "/pypi/b.whl?")) == (403, "SignatureDoesNotMatch")
    assert code(url.replace("X-Amz-Expires=60", "X-Amz-Expires=6000")) == \
        (403, "SignatureDoesNotMatch")
    assert code(url + "&versionId=x") == (403, "SignatureDoesNotMatch")
    assert get(url, method="HEAD")[0] == 403  # the method is signed too
    # Another user's key, signed with the trusted user's secret.
    other = client("s3", fw.endpoint_url, "AKIAOTHER", b.secret_access_key)
    assert code(other.generate_presigned_url(
        "get_object", Params={"Bucket": b.bucket, "Key": "pypi/a.whl"})) == \
        (403, "InvalidAccessKeyId")
    # Expired: the forwarder's clock moves on instead of the test sleeping.
    fw.clock = lambda: time.time() + 61
    status, _, body = get(url)
    assert (status, xml_code(body)) == (403, "AccessDenied")
    assert b"Request has expired" in body
    # Not valid yet.
    fw.clock = lambda: time.time() - 3600
    status, _, body = get(url)
    assert (status, xml_code(body)) == (403, "AccessDenied") and b"not valid yet" in body
    fw.clock = time.time
    assert get(url)[:3:2] == (200, b"a")
    assert [r.status for r in fw.requests] == [403, 403, 403, 403, 403, 403, 403, 403, 200]
    # SigV2 (botocore's default presigner for S3 without signature_version).
    v2 = b.client(config=Config(s3={"addressing_style": "path"})).generate_presigned_url(
        "get_object", Params={"Bucket": b.bucket, "Key": "pypi/a.whl"})
    assert "X-Amz-Signature" not in v2
    assert code(v2) == (400, "InvalidRequest")


def test_presigned_get_needs_forwarder(s3_bucket):
    """Straight to moto with authentication on, a presigned GET is a 500."""
    s3_bucket.write_object("pypi/a.whl", b"a")
    assert get(presign(s3_bucket, "pypi/a.whl"))[0] == 500


# -- multipart uploads

def test_multipart_if_none_match(s3_forwarder):
    """
    CompleteMultipartUpload with If-None-Match: * through the forwarder: 200
    for a new key, 412 PreconditionFailed once it exists; moto keeps the
    refused upload (with its parts) open until it is aborted.
    """
    b, fw = s3_forwarder.bucket, s3_forwarder
    s3 = b.client()

    def upload(key, data):
        m = s3.create_multipart_upload(Bucket=b.bucket, Key=key)
        parts = []
        for n, start in enumerate(range(0, len(data), 5 * 1024 * 1024), 1):
            p = s3.upload_part(Bucket=b.bucket, Key=key, UploadId=m["UploadId"], PartNumber=n,
                               Body=data[start:start + 5 * 1024 * 1024])
            parts.append({"ETag": p["ETag"], "PartNumber": n})
        return m["UploadId"], lambda: s3.complete_multipart_upload(
            Bucket=b.bucket, Key=key, UploadId=m["UploadId"], IfNoneMatch="*",
            MultipartUpload={"Parts": parts})

    data = b"x" * (5 * 1024 * 1024) + b"tail"
    _, complete = upload("pypi/big.whl", data)
    complete()
    assert b.read("pypi/big.whl") == data
    assert b.uploads() == []
    upload_id, complete = upload("pypi/big.whl", b"y" * (5 * 1024 * 1024) + b"other")
    assert error_of(complete) == (412, "PreconditionFailed")
    assert b.read("pypi/big.whl") == data
    assert b.uploads() == [("pypi/big.whl", upload_id)]
    s3.abort_multipart_upload(Bucket=b.bucket, Key="pypi/big.whl", UploadId=upload_id)
    assert b.uploads() == []
    assert [r.method for r in fw.requests if "uploadId=" in r.query or "uploads" in r.query] == \
        ["POST", "PUT", "PUT", "POST"] * 2 + ["DELETE"]
