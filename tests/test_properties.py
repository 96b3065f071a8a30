"""
Properties of the parsers that see hostile input first: project names,
distribution filenames, Accept negotiation, multipart bodies and Basic
credentials. Hypothesis generates the inputs; each property says what must
hold for all of them.
"""

import base64
import io
import os
import re
import tempfile

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from packaging.version import Version

from ppypi.auth import Credentials, parse_basic
from ppypi.names import InvalidFilename, is_valid_name, normalize, parse_filename
from ppypi.web import multipart
from ppypi.web.multipart import MultipartError, TooLarge
from ppypi.web.negotiate import (HTML, HTML_V1, JSON, SUPPORTED, NotAcceptableFormat,
                                 negotiate)

PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
NORMALISED = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")

# PEP 508 names, built from their grammar (letters, digits, and runs of . _ -
# strictly inside).
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
VALID_NAMES = st.builds(
    lambda first, rest: first + "".join(sep + word for sep, word in rest),
    st.text(ALNUM, min_size=1, max_size=12),
    st.lists(st.tuples(st.text("._-", min_size=1, max_size=3),
                       st.text(ALNUM, min_size=1, max_size=8)), max_size=5))
# Text that looks like names: what a hostile client would try in a URL.
NAMEISH = st.text(ALNUM[:6] + ALNUM[26:29] + "09._- \n\r\t/\\\x00%é", max_size=20)


# -- names --------------------------------------------------------------------------


@PROPERTY
@given(st.text())
def test_normalize_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once


@PROPERTY
@given(VALID_NAMES)
def test_normalised_valid_names(name):
    assert is_valid_name(name)
    n = normalize(name)
    assert NORMALISED.fullmatch(n), n
    assert normalize(n.upper()) == n
    assert is_valid_name(n)


@PROPERTY
@given(st.one_of(st.text(), NAMEISH))
def test_is_valid_name_never_raises(text):
    assert is_valid_name(text) in (True, False)


@PROPERTY
@given(NAMEISH)
@example("acme\n")
def test_what_is_valid_normalises_to_the_pep503_form(text):
    if is_valid_name(text):
        assert NORMALISED.fullmatch(normalize(text)), repr(text)


# -- filenames ------------------------------------------------------------------------

FILENAME_PIECES = st.sampled_from(
    ["acme", "acme_tool", "Acme.Tool", "1.0", "1.0.post1", "0!1", "1.0+local", "py3", "none",
     "any", "cp311", "manylinux_2_17_x86_64", "1", "-", "_", ".", "..", "/", "\\", "\x00",
     "é", "\n", ".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar.xz", ".egg", "1" * 300])
HOSTILE_FILENAMES = st.one_of(
    st.text(max_size=60),
    st.lists(FILENAME_PIECES, max_size=10).map("".join),
    st.text("ab1.-_/\\\x00+!é", max_size=30).map(lambda s: s + ".whl"),
    st.text("ab1.-_/\\\x00+!é", max_size=30).map(lambda s: s + ".tar.gz"))


@PROPERTY
@given(HOSTILE_FILENAMES)
def test_parse_filename_raises_only_invalid_filename(filename):
    try:
        dist = parse_filename(filename)
    except InvalidFilename:
        return
    # What it accepts is safe as one path component and names a valid project.
    assert "/" not in filename and "\\" not in filename and "\x00" not in filename
    assert not filename.startswith(".")
    assert NORMALISED.fullmatch(dist.project)
    assert dist.kind in ("bdist_wheel", "sdist")
    assert str(Version(dist.version)) == dist.version


def _version(epoch, release, pre, post, dev, local):
    v = (f"{epoch}!" if epoch else "") + ".".join(map(str, release))
    if pre:
        v += f"{pre[0]}{pre[1]}"
    if post is not None:
        v += f".post{post}"
    if dev is not None:
        v += f".dev{dev}"
    if local:
        v += "+" + local
    return v


VERSIONS = st.builds(
    _version,
    st.integers(0, 3),
    st.lists(st.integers(0, 10**6), min_size=1, max_size=4),
    st.none() | st.tuples(st.sampled_from(["a", "b", "rc", "alpha", "c", "pre"]),
                          st.integers(0, 99)),
    st.none() | st.integers(0, 99),
    st.none() | st.integers(0, 99),
    st.none() | st.from_regex(r"[a-z0-9]{1,6}(\.[a-z0-9]{1,6}){0,2}", fullmatch=True))


@PROPERTY
@given(VALID_NAMES, VERSIONS, st.sampled_from(["wheel", "sdist-escaped", "sdist-raw"]))
def test_filename_round_trip(name, version, kind):
    escaped = re.sub(r"[-_.]+", "_", name)
    if kind == "wheel":
        filename = f"{escaped}-{version}-py3-none-any.whl"
    else:
        filename = f"{escaped if kind == 'sdist-escaped' else name}-{version}.tar.gz"
    assume(len(filename) <= 255)
    dist = parse_filename(filename)
    assert dist.project == normalize(name)
    assert dist.version == str(Version(version))
    assert dist.kind == ("bdist_wheel" if kind == "wheel" else "sdist")


# -- Accept negotiation ----------------------------------------------------------------

MEDIA = st.sampled_from([JSON, HTML_V1, HTML, "application/vnd.pypi.simple.latest+json",
                         "application/vnd.pypi.simple.latest+html", "application/json",
                         "text/*", "application/*", "*/*", "image/png", "text/plain",
                         "application/vnd.pypi.simple.v2+json", "TEXT/HTML"])
QS = st.one_of(st.none(), st.floats(0, 1).map(lambda q: f"{q:.3f}"),
               st.sampled_from(["0", "1", "nan", "inf", "-1", "1e999", "", "x", "0.5;level=1"]))
ENTRY = st.builds(lambda m, q: m if q is None else f"{m};q={q}", MEDIA, QS)
ACCEPTS = st.one_of(st.text(max_size=200),
                    st.lists(ENTRY, max_size=8).map(", ".join),
                    st.lists(st.one_of(ENTRY, st.text(max_size=10)), max_size=8).map(",".join))


@PROPERTY
@given(ACCEPTS)
def test_negotiate_always_answers_a_supported_type(accept):
    assert negotiate(accept, None) in SUPPORTED


@PROPERTY
@given(ACCEPTS)
def test_refusing_html_never_changes_another_answer(accept):
    answer = negotiate(accept, None)
    assume(answer != HTML)
    assert negotiate(accept + ", text/html;q=0", None) == answer


@PROPERTY
@given(st.floats(0.001, 1), st.permutations([0, 1, 2]),
       st.lists(st.sampled_from(["image/png", "text/plain;q=1", "application/json",
                                 "application/vnd.pypi.simple.v2+json"]), max_size=4))
def test_only_json_acceptable_means_json(q, order, noise):
    entries = [f"{JSON};q={q:.3f}", f"{HTML};q=0", f"{HTML_V1};q=0"]
    entries = [entries[i] for i in order] + noise
    assert negotiate(", ".join(entries), None) == JSON


def _oracle(entries):
    """
    RFC 9110 12.5.1: each offer gets the q of the most specific range that
    matches it (type/subtype over type/* over */*); the highest q wins, ties
    go to the answer every client understands (text/html first); nothing
    acceptable falls back to text/html (the README).
    """
    def q_of(offer):
        major = offer.split("/")[0]
        for media in (offer, f"{major}/*", "*/*"):
            if media in entries:
                return entries[media]
        return 0.0
    preference = [HTML, HTML_V1, JSON]
    best = max(preference, key=lambda offer: (q_of(offer), -preference.index(offer)))
    return best if q_of(best) > 0 else HTML


@PROPERTY
@given(st.dictionaries(st.sampled_from([JSON, HTML_V1, HTML, "text/*", "application/*", "*/*",
                                        "image/png"]),
                       st.sampled_from([0, 0.1, 0.5, 0.9, 1]), max_size=7),
       st.randoms())
def test_the_answer_has_the_highest_q(entries, rnd):
    items = list(entries.items())
    rnd.shuffle(items)
    header = ", ".join(f"{m};q={q}" for m, q in items)
    assert negotiate(header, None) == _oracle(entries)


@PROPERTY
@given(ACCEPTS, st.sampled_from([JSON, HTML_V1, HTML, "application/vnd.pypi.simple.latest+json",
                                 "application/vnd.pypi.simple.v1 json", " TEXT/HTML "]))
def test_format_wins_over_accept(accept, fmt):
    expected = {"application/vnd.pypi.simple.latest+json": JSON,
                "application/vnd.pypi.simple.v1 json": JSON, " TEXT/HTML ": HTML}.get(fmt, fmt)
    assert negotiate(accept, fmt) == expected


@PROPERTY
@given(ACCEPTS, st.text(max_size=40))
def test_unknown_format_is_refused(accept, fmt):
    wanted = fmt.strip().lower().replace(" ", "+")
    assume(wanted not in SUPPORTED and not wanted.startswith("application/vnd.pypi.simple.latest"))
    with pytest.raises(NotAcceptableFormat):
        negotiate(accept, fmt)


# -- multipart ---------------------------------------------------------------------------

B = b"BoUnDaRy"
PIECES = [b"--" + B, b"\r\n--" + B, b"\r\n--" + B + b"--", b"\r\n", b"\r\n\r\n", b"--",
          b'Content-Disposition: form-data; name="content"; filename="a.whl"',
          b'Content-Disposition: form-data; name="x"', b"Content-Disposition: attachment",
          b'Content-Disposition: form-data; name*=UTF-8\'\'x', b": ", b"\xff\xfe", b"\x00",
          b"x" * 70]
BODIES = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=30)), max_size=25)
    .map(b"".join))


class _Trickle(io.RawIOBase):
    """A body that arrives C{step} bytes per read."""

    def __init__(self, data, step):
        self._data = data
        self._step = step

    def read(self, n=-1):
        out, self._data = self._data[:self._step], self._data[self._step:]
        return out


@PROPERTY
@given(BODIES, st.sampled_from([1, 3, 64, multipart.CHUNK]), st.sampled_from([0, 5, 1 << 20]))
def test_multipart_parser_fails_cleanly(body, step, max_file_bytes):
    with tempfile.TemporaryDirectory() as d:
        try:
            fields, upload = multipart.parse(_Trickle(body, step), B, d, max_file_bytes)
        except (MultipartError, TooLarge):
            assert os.listdir(d) == []
            return
        assert isinstance(fields, dict)
        if upload is None:
            assert os.listdir(d) == []
        else:
            assert os.listdir(d) == [os.path.basename(upload.path)]
            assert os.path.getsize(upload.path) == upload.size <= max_file_bytes
            upload.discard()
            assert os.listdir(d) == []


@PROPERTY
@given(st.one_of(st.none(), st.text(max_size=120),
                 st.builds(lambda b, rest: f"multipart/form-data; boundary={b}{rest}",
                           st.text(max_size=80), st.text(max_size=20))))
def test_boundary_of_raises_only_multipart_error(content_type):
    try:
        boundary = multipart.boundary_of(content_type)
    except MultipartError:
        return
    assert isinstance(boundary, bytes) and 1 <= len(boundary) <= 70


# -- Basic credentials ----------------------------------------------------------------------

@PROPERTY
@given(st.one_of(st.binary(max_size=300),
                 st.binary(max_size=200).map(lambda b: b"Basic " + base64.b64encode(b)),
                 st.binary(max_size=200).map(lambda b: b"basic  " + base64.b64encode(b) + b" "),
                 st.text(max_size=200)))
def test_parse_basic_returns_credentials_or_raises_value_error(header):
    try:
        result = parse_basic(header)
    except ValueError:
        return
    assert isinstance(result, Credentials)
    assert result.username and ":" not in result.username


@PROPERTY
@given(st.text(min_size=1, max_size=60).filter(lambda u: ":" not in u), st.text(max_size=60))
def test_parse_basic_round_trip(username, password):
    header = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    credentials = parse_basic(header)
    assert (credentials.username, credentials.password) == (username, password)
    assert parse_basic(header.encode()).password == password
    assert parse_basic(None) is None


# -- the access log line

_header_bytes = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)


@settings(max_examples=300, deadline=None)
@given(method=st.binary(min_size=1, max_size=10), uri=st.binary(max_size=60),
       proto=st.sampled_from([b"HTTP/1.0", b"HTTP/1.1", b'HT"TP\\1']),
       referer=st.none() | _header_bytes, agent=st.none() | _header_bytes,
       ip=st.sampled_from(["127.0.0.1", "::1", None]),
       code=st.integers(100, 599), length=st.integers(0, 10**9),
       ctype=st.none() | st.sampled_from([b"text/html", b'a"b']))
def test_access_log_line_is_twisteds_combined_line(method, uri, proto, referer, agent, ip,
                                                    code, length, ctype):
    """The fast access-log line says exactly what Twisted's combined
    formatter says (plus the Content-Type), whatever bytes a client sent."""
    from twisted.internet import address
    from twisted.web import http
    from twisted.web.test.requesthelper import DummyChannel

    from ppypi.web.site import access_log_line

    request = http.Request(DummyChannel())
    if ip is None:
        request.client = address.UNIXAddress(b"/tmp/sock")
    elif ":" in ip:
        request.client = address.IPv6Address("TCP", ip, 1234)
    else:
        request.client = address.IPv4Address("TCP", ip, 1234)
    request.method, request.uri, request.clientproto = method, uri, proto
    request.code, request.sentLength = code, length
    if referer is not None:
        request.requestHeaders.setRawHeaders(b"referer", [referer])
    if agent is not None:
        request.requestHeaders.setRawHeaders(b"user-agent", [b"first", agent])
    if ctype is not None:
        request.responseHeaders.setRawHeaders(b"content-type", [ctype])
    stamp = "[27/Nov/2026:12:00:00 +0000]"
    expected = http.combinedLogFormatter(stamp, request) + ' "%s"' % (
        (ctype or b"-").decode().replace('"', "%22"))
    assert access_log_line(stamp, request) == expected


# -- remembered header decisions

@settings(max_examples=300, deadline=None)
@given(accept=st.binary(max_size=700))
def test_remembered_negotiation_is_negotiation(accept):
    """The remembered answer for an Accept value is what negotiate() says,
    the first time and every time after, long values included."""
    from ppypi.web.simple import _NEGOTIATED

    expected = negotiate(accept.decode("latin-1"))
    assert _NEGOTIATED[accept] == expected
    assert _NEGOTIATED[accept] == expected


def test_remembered_values_stay_bounded():
    """A client inventing header values fills the memo, never past its size;
    answers stay right after it is full."""
    from ppypi.memo import Memo

    memo = Memo(lambda v: v.upper(), size=8, longest=5)
    for i in range(100):
        assert memo[b"v%d" % i] == b"V%d" % i
        assert 1 <= len(memo) <= 8
    assert b"v99" in memo  # a full memo starts afresh: new values are kept
    assert memo[b"toolong"] == b"TOOLONG" and b"toolong" not in memo


# -- archive members that would unpack outside the archive's folder

import tarfile  # noqa: E402

from ppypi import archives  # noqa: E402

REL_PATHS = st.lists(st.sampled_from(["a", "b", ".", ".."]), min_size=1, max_size=4).map("/".join)
KINDS = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
         "hard": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}
MEMBERS = st.lists(st.tuples(st.sampled_from(sorted(KINDS)), REL_PATHS, REL_PATHS), max_size=6)


def _tar_infos(members):
    infos = []
    for kind, name, link in members:
        info = tarfile.TarInfo(name)
        info.type = KINDS[kind]
        info.linkname = link if kind in ("sym", "hard") else ""
        info.size = 1 if kind == "file" else 0
        infos.append(info)
    return infos


@pytest.mark.skipif(archives._data_filter is None, reason="this Python has no tarfile.data_filter")
@PROPERTY
@given(MEMBERS)
def test_lexical_check_refuses_what_the_data_filter_refuses(members):
    """Where tarfile has no data filter, its stand-in refuses the same members."""
    for info in _tar_infos(members):
        assert (archives._lexical_refusal(info) is None) == \
            (archives._filter_refusal(info) is None), (info.name, info.type, info.linkname)


@pytest.mark.skipif(archives._data_filter is None, reason="this Python has no tarfile.data_filter")
@PROPERTY
@given(MEMBERS)
# Chains no single member shows: a is the folder, so a/.. is its parent;
# and a hard link to a symlink is unpacked as that symlink, from elsewhere.
@example([("sym", "a", "."), ("sym", "b", "a/..")])
@example([("sym", "b", "a/.."), ("sym", "a", ".")])
@example([("sym", "a", "."), ("sym", "b", "a/.."), ("file", "b/../c", "")])
@example([("sym", "a/s", "../b"), ("hard", "h", "a/s")])
def test_an_accepted_archive_unpacks_inside_its_folder(members):
    """
    What the upload check accepts, pip's way of unpacking (tarfile's data
    filter, against what earlier members put on disk) unpacks without a
    refusal, and no symlink it leaves points outside the folder.
    """
    infos = _tar_infos(members)
    checker = archives._MemberCheck()
    try:
        for info in infos:
            checker.tar_member(info)
        checker.finish()
    except archives.UnsafeArchive:
        return
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for info in infos:
            t.addfile(info, io.BytesIO(b"x") if info.isreg() else None)
    with tempfile.TemporaryDirectory() as tmp:
        # Deep inside tmp: were both checks wrong, nothing lands outside it.
        dest = os.path.realpath(os.path.join(tmp, "1", "2", "3", "4", "5", "dest"))
        os.makedirs(dest)
        buf.seek(0)
        with tarfile.open(fileobj=buf) as t:
            for info in t.getmembers():
                try:
                    t.extract(info, dest, filter="data")
                except tarfile.FilterError as e:
                    raise AssertionError(f"accepted, but unpacking refuses it: {e}") from None
                except (OSError, tarfile.TarError, KeyError, RecursionError):
                    # A clash between members, not an escape. (RecursionError:
                    # tarfile unpacks a symlink it could not create as a copy
                    # of its target, endlessly when that is itself.)
                    pass
        found = [os.path.join(folder, f) for folder, dirs, files in os.walk(tmp)
                 for f in files + dirs]
        assert [p for p in found if not p.startswith(dest + os.sep)
                and not dest.startswith(p + os.sep) and p != dest] == []
        for folder, dirs, files in os.walk(dest):
            for f in files + dirs:
                path = os.path.join(folder, f)
                if os.path.islink(path):
                    target = os.path.realpath(path)
                    assert os.path.commonpath([target, dest]) == dest, (path, target)
