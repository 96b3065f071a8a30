"""
ppypi.web.multipart: the streaming multipart/form-data parser, against a
small RFC 7578 encoder written here, including chunk edges, lookalike
boundaries, truncations and limits. No error leaves a file behind.
"""

import hashlib
import io
import os
import random
import tempfile

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ppypi.web import multipart
from ppypi.web.multipart import MultipartError, TooLarge, boundary_of, parse

B = b"BOUNDARY"
DELIM = b"\r\n--" + B
BIG = 1 << 30


def part_bytes(name, content, filename=None, headers=None):
    """One part, from its leading "--B" to its content (without the CRLF that ends it)."""
    if headers is None:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        headers = [f"Content-Disposition: {disposition}"]
        if filename is not None:
            headers.append("Content-Type: application/octet-stream")
    head = "".join(h + "\r\n" for h in headers).encode("utf-8")
    if isinstance(content, str):
        content = content.encode("utf-8")
    return b"--" + B + b"\r\n" + head + b"\r\n" + content


def encode(parts, preamble=None, epilogue=b""):
    """
    RFC 7578 (and 2046) form-data: C{parts} are (name, content) or
    (name, content, filename); a C{preamble} is followed by its CRLF.
    """
    out = b"" if preamble is None else preamble + b"\r\n"
    for p in parts:
        out += part_bytes(*p) + b"\r\n"
    return out + b"--" + B + b"--\r\n" + epilogue


def run(body, directory, max_file_bytes=BIG, step=None):
    f = io.BytesIO(body) if step is None else Trickle(body, step)
    return parse(f, B, str(directory), max_file_bytes)


class Trickle:
    """A body that comes at most C{step} bytes at a time (short reads)."""

    def __init__(self, data, step):
        self.f = io.BytesIO(data)
        self.step = step

    def read(self, n):
        return self.f.read(min(n, self.step))


def check_file(upload, directory, data, filename="pkg-1.0.tar.gz"):
    assert upload.filename == filename
    assert os.listdir(directory) == [os.path.basename(upload.path)]
    assert os.path.dirname(upload.path) == str(directory)
    with open(upload.path, "rb") as f:
        assert f.read() == data
    assert upload.size == len(data)
    assert upload.sha256 == hashlib.sha256(data).hexdigest()
    assert upload.md5 == hashlib.md5(data).hexdigest()
    assert upload.blake2_256 == hashlib.blake2b(data, digest_size=32).hexdigest()


def fails(body, directory, error=MultipartError, match=None, **kwargs):
    with pytest.raises(error, match=match):
        run(body, directory, **kwargs)
    assert os.listdir(directory) == []


# -- good bodies --------------------------------------------------------------


def test_fields_repeated_fields_and_file(tmp_path):
    data = bytes(range(256)) * 10
    body = encode([
        (":action", "file_upload"), ("name", "pkg"), ("classifiers", "B :: 2"),
        ("content", data, "pkg-1.0.tar.gz"),
        ("classifiers", "A :: 1"), ("classifiers", "C :: 3"), ("description", "é\r\nmulti\nline"),
        ("empty", ""),
    ])
    fields, upload = run(body, tmp_path)
    assert fields == {":action": ["file_upload"], "name": ["pkg"],
                      "classifiers": ["B :: 2", "A :: 1", "C :: 3"],
                      "description": ["é\r\nmulti\nline"], "empty": [""]}
    check_file(upload, tmp_path, data)
    upload.discard()
    assert os.listdir(tmp_path) == []


def test_no_file_part(tmp_path):
    fields, upload = run(encode([("a", "1")]), tmp_path)
    assert (fields, upload) == ({"a": ["1"]}, None)
    assert os.listdir(tmp_path) == []


def test_boundary_lookalikes_inside_content(tmp_path):
    data = (b"--BOUNDARY\r\n"           # at the start, not after a CRLF
            b"x\r\n--BOUNDAR\r\n"       # a partial delimiter
            b"\n--BOUNDARY--\r\n"       # LF only
            b"\r\n-\r\n--\r\n\r\n"
            b"x--BOUNDARY--\r")         # ends in CR, right before the real delimiter
    assert DELIM not in data
    body = encode([("f", data.decode()), ("content", data, "pkg-1.0.tar.gz")])
    fields, upload = run(body, tmp_path)
    assert fields == {"f": [data.decode()]}
    check_file(upload, tmp_path, data)


@pytest.mark.parametrize("k", range(0, len(DELIM) + 3))
def test_delimiter_straddles_a_read(tmp_path, k):
    """The file's delimiter starts k bytes before the end of the second read."""
    head = part_bytes("content", b"", "pkg-1.0.tar.gz")
    size = 2 * multipart.CHUNK - k - len(head)
    rng = random.Random(k)
    chunk = rng.randbytes(997) + b"\r\n--BOUNDAR" + b"\r\n--" + b"\r\n"
    data = (chunk * (size // len(chunk) + 1))[:size]
    assert DELIM not in data
    body = encode([("content", data, "pkg-1.0.tar.gz"), ("after", "yes")])
    assert body.index(DELIM) == 2 * multipart.CHUNK - k
    fields, upload = run(body, tmp_path)
    assert fields == {"after": ["yes"]}
    check_file(upload, tmp_path, data)


def test_preamble_epilogue_and_padding_are_ignored(tmp_path):
    epilogue = b"epilogue\r\n--BOUNDARY\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nno\r\n"
    body = encode([("a", "1"), ("b", "2")], preamble=b"This is a preamble.\r\n--BOUNDAR",
                  epilogue=epilogue)
    body = body.replace(b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"b\"",
                        b"--BOUNDARY \t \r\nContent-Disposition: form-data; name=\"b\"")
    assert run(body, tmp_path) == ({"a": ["1"], "b": ["2"]}, None)


def test_header_names_are_case_insensitive(tmp_path):
    body = encode([("ignored", "v", None, ['content-DISPOSITION: form-data; name="x"',
                                           "X-Other: thing"])])
    assert run(body, tmp_path) == ({"x": ["v"]}, None)


def test_file_of_exactly_max_file_bytes(tmp_path):
    data = b"z" * 1000
    fields, upload = run(encode([("content", data, "pkg-1.0.tar.gz")]), tmp_path,
                         max_file_bytes=1000)
    check_file(upload, tmp_path, data)


def test_many_parts_up_to_the_limit(tmp_path):
    body = encode([("n", str(i)) for i in range(multipart.MAX_PARTS)])
    fields, _ = run(body, tmp_path)
    assert fields["n"] == [str(i) for i in range(multipart.MAX_PARTS)]


# -- bad bodies -----------------------------------------------------------------


GOOD = encode([("a", "1"), ("content", b"file-bytes" * 100, "pkg-1.0.tar.gz"), ("z", "2")])


@pytest.mark.parametrize("body", [
    b"",
    b"no boundary at all",
    GOOD[:GOOD.index(b"\r\n--" + B + b"\r\nContent-Disposition: form-data; name=\"z\"")],
    GOOD[:GOOD.rindex(DELIM) + len(DELIM)],        # closing delimiter without its "--"
    GOOD[:GOOD.rindex(DELIM) + len(DELIM) + 1],    # ... with one "-"
    GOOD[:GOOD.index(b"file-bytes") + 50],         # inside the file
    GOOD[:GOOD.index(b"Content-Type") + 5],        # inside the file's headers
    GOOD.replace(b"--BOUNDARY--", b"--BOUNDARY"),  # final delimiter is an ordinary one
], ids=["empty", "no-boundary", "before-last-part", "no-dashes", "one-dash", "in-file",
        "in-headers", "never-closed"])
def test_truncated_body(tmp_path, body):
    fails(body, tmp_path)


def test_garbage_after_a_delimiter(tmp_path):
    fails(GOOD.replace(b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"z\"",
                       b"--BOUNDARYjunk\r\nContent-Disposition: form-data; name=\"z\""), tmp_path,
          match="malformed boundary line")


def test_two_content_parts(tmp_path):
    body = encode([("content", b"one", "a.tar.gz"), ("content", b"two", "b.tar.gz")])
    fails(body, tmp_path, match="more than one")


def test_content_part_without_filename(tmp_path):
    fails(encode([("content", b"data")]), tmp_path, match="no filename")


@pytest.mark.parametrize("headers, match", [
    (["Content-Type: text/plain"], "without Content-Disposition"),
    (['Content-Disposition: attachment; name="a"'], "not form-data"),
    (["Content-Disposition: form-data"], "without a name"),
    (['Content-Disposition: form-data; name=""'], "without a name"),
    (['Content-Disposition: form-data; name="a"', 'Content-Disposition: form-data; name="b"'],
     "two Content-Disposition"),
    (['Content-Disposition: form-data; name="a"', "no colon here"], "malformed part header"),
    (["Content-Disposition: form-data; name*=utf-8''a"], "encoded part name"),
])
def test_bad_part_headers(tmp_path, headers, match):
    body = encode([("content", b"x", "pkg.tar.gz"), ("", "v", None, headers)])
    fails(body, tmp_path, match=match)


def test_non_utf8_field_and_headers(tmp_path):
    fails(encode([("a", b"caf\xe9")]), tmp_path, match="not UTF-8")
    body = encode([("a", "v")]).replace(b'name="a"', b'name="\xff"')
    fails(body, tmp_path, match="not UTF-8")


def test_oversized_fields(tmp_path):
    fields, _ = run(encode([("d", "x" * multipart.MAX_FIELD_BYTES)]), tmp_path)
    assert len(fields["d"][0]) == multipart.MAX_FIELD_BYTES
    fails(encode([("d", "x" * (multipart.MAX_FIELD_BYTES + 1))]), tmp_path, match="too large")
    each = multipart.MAX_FIELD_BYTES - 1
    count = multipart.MAX_FIELDS_BYTES // each + 1
    body = encode([("content", b"f", "p.tar.gz")] + [("d", "x" * each)] * count)
    fails(body, tmp_path, match="too large")


OVERSIZED_HEADERS = encode([("a", "v", None, ['Content-Disposition: form-data; name="a"',
                                              "X-Pad: " + "p" * 2 * multipart.MAX_HEADER_BLOCK])])


def test_oversized_headers_in_small_reads(tmp_path):
    fails(OVERSIZED_HEADERS, tmp_path, match="oversized part headers", step=1000)


def test_oversized_headers_in_one_read(tmp_path):
    fails(OVERSIZED_HEADERS, tmp_path, match="oversized part headers")


def test_too_many_parts(tmp_path):
    body = encode([("content", b"f", "p.tar.gz")] +
                  [("n", str(i)) for i in range(multipart.MAX_PARTS)])
    fails(body, tmp_path, match="too many parts")


@pytest.mark.parametrize("size", [1001, 3 * multipart.CHUNK])
def test_file_over_max_file_bytes(tmp_path, size):
    body = encode([("a", "1"), ("content", b"y" * size, "pkg-1.0.tar.gz")])
    fails(body, tmp_path, error=TooLarge, max_file_bytes=1000)


# -- boundary_of ----------------------------------------------------------------


@pytest.mark.parametrize("content_type, boundary", [
    ("multipart/form-data; boundary=abc", b"abc"),
    ("Multipart/Form-Data; Boundary=abc", b"abc"),
    ('multipart/form-data; boundary="a b:c=d?"', b"a b:c=d?"),
    ("multipart/form-data; charset=utf-8; boundary=----x", b"----x"),
    ("multipart/form-data; boundary=" + "x" * 70, b"x" * 70),
])
def test_boundary_of(content_type, boundary):
    assert boundary_of(content_type) == boundary


@pytest.mark.parametrize("content_type", [
    None, "", "text/plain", "application/x-www-form-urlencoded", "multipart/mixed; boundary=abc",
    "multipart/form-data", 'multipart/form-data; boundary=""', "multipart/form-data; boundary=a{b",
    'multipart/form-data; boundary="trailing "', "multipart/form-data; boundary=" + "x" * 71,
    'multipart/form-data; boundary="café"', "multipart/form-data; boundary*=utf-8''abc",
])
def test_boundary_of_rejects(content_type):
    with pytest.raises(MultipartError):
        boundary_of(content_type)


# -- properties -----------------------------------------------------------------

LOOKALIKES = [b"\r\n--BOUNDAR", b"--BOUNDARY", b"\r\n--", b"\r\n", b"\r\n\r\n", b"BOUNDARY--",
              b"\r", b"\n--BOUNDARY", b"-", b"Content-Disposition: form-data; name=\"x\"\r\n"]
TRICKY_BYTES = st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(LOOKALIKES)),
                        max_size=12).map(b"".join)
TRICKY_TEXT = st.one_of(
    st.text(max_size=30),
    st.lists(st.sampled_from([s.decode() for s in LOOKALIKES] + ["é", "x"]),
             max_size=8).map("".join))
NAMES = st.text(alphabet="abcxyzABC019_:.- ;=,()é", min_size=1, max_size=10).filter(
    lambda n: n != "content")
FILENAMES = st.from_regex(r"[A-Za-z0-9_.+-]{1,30}", fullmatch=True)
FORMS = st.fixed_dictionaries({
    "fields": st.lists(st.tuples(st.sampled_from(["a", "b", ":action"]) | NAMES, TRICKY_TEXT),
                       max_size=6),
    "file": st.none() | st.tuples(FILENAMES, TRICKY_BYTES),
    "position": st.integers(0, 6),
    "preamble": st.none() | TRICKY_BYTES,
    "epilogue": TRICKY_BYTES,
})
PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def body_of(form):
    contents = [v.encode() for _, v in form["fields"]]
    parts = [(n, v) for n, v in form["fields"]]
    if form["file"] is not None:
        filename, data = form["file"]
        contents.append(data)
        parts.insert(min(form["position"], len(parts)), ("content", data, filename))
    # An encoder picks a boundary that its content does not contain.
    assume(all(DELIM not in c for c in contents))
    if form["preamble"] is not None:
        assume(DELIM not in b"\r\n" + form["preamble"])
    return encode(parts, form["preamble"], form["epilogue"])


def expected_fields(form):
    out = {}
    for name, value in form["fields"]:
        out.setdefault(name, []).append(value)
    return out


def check_result(form, fields, upload, directory):
    assert fields == expected_fields(form)
    if form["file"] is None:
        assert upload is None and os.listdir(directory) == []
    else:
        check_file(upload, directory, form["file"][1], form["file"][0])


@PROPERTY
@given(form=FORMS, step=st.sampled_from([1, 2, 3, 7, 13, 64, multipart.CHUNK]))
def test_roundtrip_property(form, step):
    body = body_of(form)
    with tempfile.TemporaryDirectory() as d:
        fields, upload = run(body, d, max_file_bytes=1 << 20, step=step)
        check_result(form, fields, upload, d)


@PROPERTY
@given(form=FORMS, step=st.sampled_from([1, 5, 64, multipart.CHUNK]), data=st.data())
def test_truncation_property(form, step, data):
    body = body_of(form)
    closing_end = len(body) - len(form["epilogue"]) - len(b"\r\n")  # just after "--B--"
    assert body[:closing_end].endswith(B + b"--")
    cut = data.draw(st.integers(0, len(body)), label="cut")
    with tempfile.TemporaryDirectory() as d:
        if cut >= closing_end:
            fields, upload = run(body[:cut], d, max_file_bytes=1 << 20, step=step)
            check_result(form, fields, upload, d)
        else:
            with pytest.raises(MultipartError):
                run(body[:cut], d, max_file_bytes=1 << 20, step=step)
            assert os.listdir(d) == []
