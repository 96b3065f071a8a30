"""
Uploads: the request class that spools bodies safely, and the checks an
upload must pass before it is published (as Warehouse makes them).
"""

import errno
import hmac
import re
import tempfile

from packaging.version import InvalidVersion, Version
from twisted.web import server

from ..domain import CheckedUpload
from ..metadata import (MetadataError, core_metadata_servable, parse_metadata,
                        read_metadata, requires_python_of, summary_of)
from ..names import (InvalidFilename, is_safe_filename, is_valid_name, normalize,
                     parse_filename, version_of)

# Room for the form fields around the file part.
MULTIPART_OVERHEAD = 32 << 20


class UploadError(ValueError):
    """An upload that is refused; the message is what twine shows."""

    def __init__(self, message, code=400):
        super().__init__(message)
        self.message = message
        self.code = code


class _Discard:
    """A body sink for requests refused before their body is read."""

    def write(self, data):
        pass

    def seek(self, *args):
        pass

    def read(self, *args):
        return b""

    def close(self):
        pass


class PPyPIRequest(server.Request):
    """
    A request that never parses multipart bodies into C{args} (that reads
    them whole into memory), spools large bodies under the server's own
    state folder, and refuses bodies larger than allowed before reading them.

    The limits come from the site: C{site.max_body(path)} (bytes or None)
    and C{site.spool_dir}.
    """

    _received = 0
    _limit = None
    _started = None
    _draining = False
    _dispatched = False
    refused = False
    # A body must arrive at this average rate once the site's timeout has
    # passed since its first byte (slow-body clients hold a connection and a
    # spool file open for nothing).
    MIN_BODY_RATE = 1024

    def __init__(self, channel, *args, **kwargs):
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(channel, *args, **kwargs)
        site = getattr(channel, "site", None)
        self.started = site.reactor.seconds() if site is not None else None

    def gotLength(self, length):
        site = getattr(self.channel, "site", None)
        path = getattr(self.channel, "_path", None)  # the request line's path
        if site is not None and hasattr(site, "max_body"):
            self._limit = site.max_body(path)
        if self._limit is not None and length is not None and length > self._limit:
            self._refuse()
            return
        if site is not None and getattr(site, "spool_dir", None) and (length is None or length >= 100_000):
            try:
                self.content = tempfile.TemporaryFile(dir=site.spool_dir)
            except OSError:
                # Read-only or full: say so rather than drop the connection.
                self._refuse(503, b"Cannot store uploads now", drain=True)
        else:
            super().gotLength(length)

    def handleContentChunk(self, data):
        if self.refused:
            return
        self._received += len(data)
        site = getattr(self.channel, "site", None)
        if site is not None:
            now = site.reactor.seconds()
            if self._started is None:
                self._started = now
            elapsed = now - self._started
            grace = getattr(site, "timeOut", None) or 60
            if elapsed > grace and self._received < self.MIN_BODY_RATE * elapsed:
                _close(self.content)
                self._refuse(408, b"Request body too slow")
                return
        if self._limit is not None and self._received > self._limit:
            # A chunked body that grew past the limit.
            _close(self.content)
            self._refuse()
            return
        try:
            super().handleContentChunk(data)
        except OSError as e:
            self._spool_failed(e)

    def _refuse(self, code=413, reason=b"Request body too large", drain=False):
        """
        Answer at once and close. With C{drain}, the rest of the (already
        bounded) body is read and thrown away first: closing with unread
        data makes the kernel send a reset, and the client may lose the
        answer with it.
        """
        self.refused = True
        self.content = _Discard()
        body = b"%d %s\n" % (code, reason)
        self.channel.transport.write(
            b"HTTP/1.1 %d %s\r\n" % (code, reason) +
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            b"Connection: close\r\n\r\n" + body)
        self._draining = drain
        if not drain:
            self.channel.transport.loseConnection()

    def requestReceived(self, command, path, version):
        if not self.refused:
            try:
                # The spool is buffered: a full disk may show only now.
                self.content.flush()
            except OSError as e:
                self._spool_failed(e)
        if self.refused:
            if self._draining:
                self.channel.transport.loseConnection()  # the body is all read
            return
        self._dispatched = True
        super().requestReceived(command, path, version)

    def connectionLost(self, reason):
        site = getattr(self.channel, "site", None)
        super().connectionLost(reason)
        # twisted.web logs a request when it finishes; one whose client
        # left first would leave no trace in the access log or the metrics.
        if self._dispatched and not self.finished and hasattr(site, "log_aborted"):
            site.log_aborted(self)

    def _spool_failed(self, error):
        """The spool's disk is full (or went read-only) under the body."""
        _close(self.content)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            self._refuse(507, b"Insufficient storage", drain=True)
        else:
            self._refuse(503, b"Cannot store uploads now", drain=True)


def _close(spool):
    """
    Close a spool being given up. Closing a buffered file writes what it
    still holds: on a full disk that fails again, and the error must not
    escape (the connection would drop before the refusal reaches the
    client). The file is closed either way.
    """
    try:
        spool.close()
    except OSError:
        pass


def _one(fields, name, required=True):
    values = fields.get(name)
    if not values:
        if required:
            raise UploadError(f"Missing required field {name!r}")
        return None
    if len(values) > 1:
        raise UploadError(f"Field {name!r} given more than once")
    return values[0]


def check_upload(fields, upload):
    """
    The checks Warehouse makes, in its order. Blocking (reads the archive).

    @return: L{CheckedUpload}
    @raise UploadError: with the reason twine will show.
    """
    protocol = _one(fields, "protocol_version", required=False)
    if protocol is not None and protocol != "1":
        raise UploadError(f"Unknown protocol version {protocol!r}")
    name = _one(fields, "name")
    version = _one(fields, "version")
    if not is_valid_name(name):
        raise UploadError(f"Invalid project name {name!r}")
    try:
        version_obj = version_of(version)
    except InvalidVersion:
        raise UploadError(f"Invalid version {version!r}") from None
    if upload is None:
        raise UploadError("Upload payload does not have a file")
    filename = upload.filename
    if not is_safe_filename(filename):
        raise UploadError("Invalid filename: must not contain path separators, "
                          "control characters or a leading dot")
    try:
        dist = parse_filename(filename)
    except InvalidFilename:
        raise UploadError(f"Invalid distribution filename {filename!r}: not a wheel "
                          f"or an sdist (.tar.gz, .zip)") from None
    if dist.project != normalize(name):
        raise UploadError(f"Start filename for {name!r} with {normalize(name).replace('-', '_')!r}")
    if Version(dist.version) != version_obj:
        raise UploadError(f"Version in filename ({dist.version}) does not match "
                          f"version field ({version})")
    filetype = _one(fields, "filetype", required=False)
    if filetype is not None and filetype != dist.kind:
        raise UploadError(f"Filetype {filetype!r} does not match the file {filename!r}")
    if upload.size == 0:
        raise UploadError("Upload payload is an empty file")
    for field, actual in (("sha256_digest", upload.sha256), ("md5_digest", upload.md5),
                          ("blake2_256_digest", upload.blake2_256)):
        claimed = _one(fields, field, required=False)
        if claimed is not None and not hmac.compare_digest(claimed.strip().lower(), actual):
            raise UploadError(f"The {field} supplied does not match the uploaded file")
    try:
        # Every member is checked too: an archive that would unpack outside
        # its folder is refused (pip would not install it; older unpackers
        # would write there).
        raw = read_metadata(upload.path, dist.kind, filename, check=True)
        metadata = parse_metadata(raw)
    except MetadataError as e:
        raise UploadError(f"Invalid distribution file: {e}") from None
    meta_name = metadata.get("Name")
    meta_version = metadata.get("Version")
    if dist.kind == "bdist_wheel" or meta_name is not None:
        if meta_name is None or normalize(str(meta_name)) != dist.project:
            raise UploadError(f"Name in the file's metadata ({meta_name}) does not match "
                              f"the filename ({filename})")
        try:
            same_version = meta_version is not None and \
                version_of(str(meta_version)) == version_obj
        except InvalidVersion:
            same_version = False
        if not same_version:
            raise UploadError(f"Version in the file's metadata ({meta_version}) does not "
                              f"match the filename ({filename})")
    return CheckedUpload(dist, raw, requires_python_of(metadata),
                         core_metadata_servable(dist.kind, metadata), summary_of(metadata))


def safe_reason(message):
    """A message fit for an HTTP status line: one line of printable ASCII."""
    return re.sub(r"[^\x20-\x7e]", "?", message)[:300]
