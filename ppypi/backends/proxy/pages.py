"""
An upstream index's project pages, read as data: PEP 691 JSON when the
upstream offers it, else PEP 503 HTML, parsed into plain values and checked
one by one. Nothing of the upstream's markup is ever passed on: our pages
are rendered from these values, so a hostile upstream cannot inject script
or off-host links, and a file it lists must be a file of the project it was
asked for.
"""

import calendar
import json
import re
import time
from html.parser import HTMLParser
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from ...domain import DistFile
from ...names import InvalidFilename, parse_filename

ACCEPT = ("application/vnd.pypi.simple.v1+json, "
          "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01")
JSON_TYPES = ("application/vnd.pypi.simple.v1+json",)
# What a page may be: pypi.org's largest project pages are a few MB.
MAX_PAGE_BYTES = 64 << 20
MAX_TEXT = 1000
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A yank reason is text for people: markup or control characters in one are
# not repeated (the file stays yanked).
_MARKUP = re.compile(r"[<>\x00-\x1f\x7f]")


class PageError(ValueError):
    """The upstream's page is not an index page."""


def _sha(value):
    value = value.lower() if isinstance(value, str) else None
    return value if value and _SHA256.fullmatch(value) else None


def _text(value):
    """A short string, or None (wrong type, or too long to be honest)."""
    if isinstance(value, str) and len(value) <= MAX_TEXT:
        return value
    return None


def _requires_python(value):
    value = _text(value)
    if not value:
        return None
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        return None
    return value


def _upload_time(value):
    """PEP 700's ISO 8601 UTC time as epoch seconds, or None."""
    value = _text(value)
    if not value:
        return None
    try:
        whole, _, fraction = value.rstrip("Z").partition(".")
        seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
        return seconds + (float("0." + fraction) if fraction.isdigit() else 0.0)
    except ValueError:
        return None


class Entry:
    """One file as the upstream lists it, checked."""

    __slots__ = ("filename", "url", "sha256", "requires_python", "yanked", "metadata_sha256",
                 "size", "upload_time")

    def __init__(self, filename, url, sha256, requires_python=None, yanked=None,
                 metadata_sha256=None, size=None, upload_time=None):
        self.filename = filename
        self.url = url
        self.sha256 = sha256
        self.requires_python = requires_python
        self.yanked = yanked            # None, or the reason ("" for none given)
        self.metadata_sha256 = metadata_sha256
        self.size = size
        self.upload_time = upload_time

    def to_json(self):
        return {s: getattr(self, s) for s in self.__slots__}

    @classmethod
    def from_json(cls, data):
        return cls(**{s: data.get(s) for s in cls.__slots__})

    def dist(self, fetched_at):
        """The L{DistFile} the index holds for it."""
        name = parse_filename(self.filename)
        when = self.upload_time if self.upload_time is not None else fetched_at
        return DistFile(self.filename, name.project, name.version, name.kind, self.sha256,
                        self.size or 0, int(when * 1e9), self.requires_python, self.url,
                        self.metadata_sha256, self.metadata_sha256 is not None, when)


def check(project, filename, url, sha256, page_url, **fields):
    """
    An L{Entry}, or None when the upstream's file cannot be taken: not a
    distribution of C{project}, no sha256 to check its bytes against, or a
    URL that is not http(s).
    """
    filename = _text(filename)
    if not filename or "/" in filename or "\\" in filename:
        return None
    try:
        name = parse_filename(filename)
    except InvalidFilename:
        return None
    if name.project != project or not _sha(sha256):
        return None
    url = _text(url) if isinstance(url, str) and len(url) <= 8 * MAX_TEXT else None
    if not url:
        return None
    url = urldefrag(urljoin(page_url, url))[0]
    if urlsplit(url).scheme not in ("http", "https"):
        return None
    size = fields.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        size = None
    yanked = fields.get("yanked")
    if yanked is None or yanked is False:
        yanked = None
    elif not isinstance(yanked, str) or len(yanked) > MAX_TEXT or _MARKUP.search(yanked):
        yanked = ""  # yanked, with no reason we would repeat
    return Entry(filename, url, _sha(sha256), _requires_python(fields.get("requires_python")),
                 yanked, _sha(fields.get("metadata_sha256")), size,
                 _upload_time(fields.get("upload_time")))


def _metadata_hash(value):
    """PEP 691/714 core-metadata: true, or {"sha256": ...}; only a hash is useful."""
    if isinstance(value, dict):
        return value.get("sha256")
    return None


def parse_json(project, data, page_url):
    """Entries of a PEP 691 JSON page."""
    try:
        page = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise PageError(f"not JSON: {e}") from None
    if not isinstance(page, dict) or not isinstance(page.get("files"), list):
        raise PageError("not a PEP 691 project page")
    entries = {}
    for item in page["files"]:
        if not isinstance(item, dict):
            continue
        hashes = item.get("hashes")
        metadata = item.get("core-metadata", item.get("dist-info-metadata"))
        entry = check(project, item.get("filename"), item.get("url"),
                      hashes.get("sha256") if isinstance(hashes, dict) else None, page_url,
                      requires_python=item.get("requires-python"), yanked=item.get("yanked"),
                      metadata_sha256=_metadata_hash(metadata), size=item.get("size"),
                      upload_time=item.get("upload-time"))
        if entry is not None:
            entries.setdefault(entry.filename, entry)
    return list(entries.values())


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.anchors = []
        self._open = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._open = (dict(attrs), [])
            self.anchors.append(self._open)

    def handle_data(self, data):
        if self._open is not None:
            self._open[1].append(data)

    def handle_endtag(self, tag):
        if tag == "a":
            self._open = None


def parse_html(project, data, page_url):
    """Entries of a PEP 503 HTML page (attributes of PEP 503/592/658/714)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    parser = _Anchors()
    try:
        parser.feed(text)
        parser.close()
    except (AssertionError, ValueError) as e:  # pragma: no cover (the parser is lenient)
        raise PageError(f"not HTML: {e}") from None
    entries = {}
    for attrs, _ in parser.anchors:
        href = attrs.get("href")
        if not isinstance(href, str):
            continue
        url, fragment = urldefrag(href)
        sha256 = fragment[len("sha256="):] if fragment.startswith("sha256=") else None
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        metadata = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        metadata_sha = metadata[len("sha256="):] if isinstance(metadata, str) and \
            metadata.startswith("sha256=") else None
        # PEP 592: the attribute yanks, its value (maybe empty) is the reason.
        yanked = (attrs["data-yanked"] or "") if "data-yanked" in attrs else None
        entry = check(project, filename, url, sha256, page_url,
                      requires_python=attrs.get("data-requires-python"), yanked=yanked,
                      metadata_sha256=metadata_sha)
        if entry is not None:
            entries.setdefault(entry.filename, entry)
    return list(entries.values())


def parse(project, content_type, data, page_url):
    """Entries of a project page, by its content type."""
    if len(data) > MAX_PAGE_BYTES:
        raise PageError(f"a page of {len(data)} bytes")
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in JSON_TYPES or kind == "application/json":
        return parse_json(project, data, page_url)
    return parse_html(project, data, page_url)
