"""
A streaming multipart/form-data parser for uploads.

Twisted's own parsing (C{request.args}) reads the whole body into memory and
loses the filename and repeated fields. This one reads the spooled body in
chunks, keeps the small fields, and writes the file part straight to a
temporary file while hashing it. Blocking: run it in a thread.
"""

import hashlib
import os
import re
import tempfile
from email.message import Message

from ..domain import UploadedFile

CHUNK = 256 * 1024
MAX_HEADER_BLOCK = 16 * 1024
MAX_FIELD_BYTES = 4 << 20      # one field (a long description fits)
MAX_FIELDS_BYTES = 16 << 20    # all fields together
MAX_PARTS = 1000
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{1,70}$")


class MultipartError(ValueError):
    """The body is not valid multipart/form-data (a 400)."""


class TooLarge(ValueError):
    """The file part is larger than allowed (a 413)."""


def boundary_of(content_type):
    """
    The boundary of a C{multipart/form-data} Content-Type value.

    @raise MultipartError: if it is another type or has no valid boundary.
    """
    msg = Message()
    msg["content-type"] = content_type or ""
    if msg.get_content_type() != "multipart/form-data":
        raise MultipartError("Request is not multipart/form-data")
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not _BOUNDARY.match(boundary) or boundary.endswith(" "):
        raise MultipartError("multipart/form-data without a valid boundary")
    return boundary.encode("ascii")


class _FileSink:
    def __init__(self, filename, directory, max_bytes):
        self.filename = filename
        self.max_bytes = max_bytes
        fd, self.path = tempfile.mkstemp(dir=directory, prefix="upload-", suffix=".part")
        self.f = os.fdopen(fd, "wb")
        self.size = 0
        self.hashes = (hashlib.sha256(), hashlib.md5(), hashlib.blake2b(digest_size=32))

    def write(self, data):
        self.size += len(data)
        if self.size > self.max_bytes:
            raise TooLarge(f"File too large. Limit is {self.max_bytes} bytes.")
        self.f.write(data)
        for h in self.hashes:
            h.update(data)

    def finish(self):
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        sha256, md5, blake2 = (h.hexdigest() for h in self.hashes)
        return UploadedFile(self.filename, self.path, self.size, sha256, md5, blake2)

    def abort(self):
        self.f.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class _FieldSink:
    def __init__(self, parser):
        self.parser = parser
        self.chunks = []
        self.size = 0

    def write(self, data):
        self.size += len(data)
        self.parser.fields_bytes += len(data)
        if self.size > MAX_FIELD_BYTES or self.parser.fields_bytes > MAX_FIELDS_BYTES:
            raise MultipartError("form field too large")
        self.chunks.append(data)

    def value(self):
        try:
            return b"".join(self.chunks).decode("utf-8")
        except UnicodeDecodeError:
            raise MultipartError("form field is not UTF-8") from None


def _part_headers(block):
    """Parse a part's header block into (name, filename)."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise MultipartError("part headers are not UTF-8") from None
    disposition = None
    for line in text.split("\r\n"):
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise MultipartError("malformed part header")
        if key.strip().lower() == "content-disposition":
            if disposition is not None:
                raise MultipartError("part with two Content-Disposition headers")
            disposition = value.strip()
    if disposition is None:
        raise MultipartError("part without Content-Disposition")
    msg = Message()
    msg["content-disposition"] = disposition
    if msg.get_content_disposition() != "form-data":
        raise MultipartError("part is not form-data")
    name = msg.get_param("name", header="content-disposition")
    filename = msg.get_param("filename", header="content-disposition")
    if isinstance(name, tuple) or isinstance(filename, tuple):
        # RFC 2231 encodings are not what form-data uses (RFC 7578 4.2)
        raise MultipartError("unsupported encoded part name")
    if not name:
        raise MultipartError("part without a name")
    return name, filename


class _Parser:
    def __init__(self):
        self.fields_bytes = 0


def parse(fileobj, boundary, directory, max_file_bytes, file_field="content"):
    """
    Parse a multipart/form-data body.

    @param fileobj: the body, positioned at its start.
    @param directory: where the file part is written (same filesystem as
        its destination, so that publishing is a rename).
    @return: (fields {name: [values]}, L{UploadedFile} or None)
    @raise MultipartError: malformed body (nothing is left on disk).
    @raise TooLarge: the file part exceeds C{max_file_bytes}.
    """
    delimiter = b"\r\n--" + boundary
    parser = _Parser()
    fields = {}
    upload = None
    sink = None
    # Pretend the body starts with CRLF so that the first delimiter looks
    # like the others.
    buf = b"\r\n"
    eof = False
    parts = 0

    def fill():
        nonlocal buf, eof
        if eof:
            return False
        data = fileobj.read(CHUNK)
        if not data:
            eof = True
            return False
        buf += data
        return True

    try:
        # Preamble: skip to the first delimiter.
        while True:
            i = buf.find(delimiter)
            if i >= 0:
                buf = buf[i + len(delimiter):]
                break
            if len(buf) > MAX_HEADER_BLOCK or not fill():
                raise MultipartError("multipart body without a boundary line")
        while True:
            # After a delimiter: "--" ends the body, CRLF starts a part.
            while len(buf) < 2 and fill():
                pass
            if buf.startswith(b"--"):
                break
            # Tolerate transport padding (RFC 2046) before the CRLF.
            while b"\r\n" not in buf[:200] and fill():
                pass
            line_end = buf.find(b"\r\n")
            if line_end < 0 or buf[:line_end].strip(b" \t"):
                raise MultipartError("malformed boundary line")
            buf = buf[line_end + 2:]
            parts += 1
            if parts > MAX_PARTS:
                raise MultipartError("too many parts")
            # Headers.
            while True:
                end = buf.find(b"\r\n\r\n", 0, MAX_HEADER_BLOCK + 4)
                if end >= 0:
                    break
                if len(buf) > MAX_HEADER_BLOCK or not fill():
                    raise MultipartError("truncated or oversized part headers")
            name, filename = _part_headers(buf[:end])
            buf = buf[end + 4:]
            if name == file_field:
                if upload is not None or sink is not None:
                    raise MultipartError(f"more than one {file_field!r} part")
                if filename is None:
                    raise MultipartError(f"{file_field!r} part has no filename")
                sink = _FileSink(filename, directory, max_file_bytes)
            else:
                sink = _FieldSink(parser)
            # Body: everything up to the next delimiter.
            while True:
                i = buf.find(delimiter)
                if i >= 0:
                    sink.write(buf[:i])
                    buf = buf[i + len(delimiter):]
                    break
                keep = len(delimiter) - 1
                if len(buf) > keep:
                    sink.write(buf[:-keep])
                    buf = buf[-keep:]
                if not fill():
                    raise MultipartError("truncated multipart body")
            if isinstance(sink, _FileSink):
                upload = sink.finish()
            else:
                fields.setdefault(name, []).append(sink.value())
            sink = None
    except BaseException:
        if isinstance(sink, _FileSink):
            sink.abort()
        if upload is not None:
            upload.discard()
        raise
    return fields, upload
