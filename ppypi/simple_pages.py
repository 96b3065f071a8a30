"""
The simple repository API's pages, rendered (PEP 503 HTML, PEP 691 JSON,
with PEP 592/658/700/714/740/792's fields): what the index keeps as bytes
(L{ppypi.index}), and the version order pages and people's pages share.
"""

import json
from datetime import datetime, timezone
from html import escape
from urllib.parse import quote

from packaging.version import InvalidVersion, Version


# PEP 629: 1.0 is PEP 503 + 592 + 658/714; 1.1 adds PEP 700's JSON fields;
# 1.3 PEP 740's provenance; 1.4 PEP 792's project status. (1.2, PEP 708's
# tracks and alternate locations, is served by no index and read by no
# client: a page without them is a 1.2 page.)
API_VERSION = "1.4"

HTML = "text/html"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
JSON = "application/vnd.pypi.simple.v1+json"


def iso8601(seconds):
    """UTC, ISO 8601, as PEP 700 and Warehouse write it."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _version_key(f):
    try:
        return (0, Version(f.version), f.filename)
    except InvalidVersion:  # pragma: no cover - parse_filename already checked
        return (1, f.version, f.filename)


def sort_versions(versions):
    def key(v):
        try:
            return (0, Version(v))
        except InvalidVersion:  # pragma: no cover
            return (1, v)
    return sorted(versions, key=key)


def latest_version(versions, yanks):
    """
    The version to describe a project by, as pypi.org does: the newest that
    is neither yanked nor a pre-release, else the newest.
    """
    ordered = sort_versions(versions)
    for v in reversed(ordered):
        try:
            if v not in yanks and not Version(v).is_prerelease:
                return v
        except InvalidVersion:  # pragma: no cover - indexed versions parse
            continue
    return ordered[-1]


_HEAD = (
    '<!DOCTYPE html>\n<html>\n<head>\n'
    f'<meta name="pypi:repository-version" content="{API_VERSION}">\n'
    '<title>{title}</title>\n</head>\n<body>\n'
)


def render_root_html(projects):
    out = [_HEAD.format(title="Simple index")]
    for name in sorted(projects):
        out.append(f'<a href="{escape(name)}/">{escape(name)}</a><br>\n')
    out.append("</body>\n</html>\n")
    return "".join(out).encode("utf-8")


def render_root_json(projects):
    return json.dumps({
        "meta": {"api-version": API_VERSION},
        "projects": [{"name": name} for name in sorted(projects)],
    }, separators=(",", ":")).encode("utf-8")


def served(files, status):
    """The files a page offers: none of a quarantined project's (PEP 792)."""
    if status is not None and status["status"] == "quarantined":
        return ()
    return files


def provenance_url(f):
    """A file's PEP 740 provenance, relative to its project's page."""
    return f"../../integrity/{f.project}/{quote(f.version)}/{quote(f.filename)}/provenance"


#: For pip, a wheel smaller than this is listed without its PEP 658
#: metadata: pip then downloads the wheel itself to resolve (one round trip,
#: as for the metadata) and installs from that download, where with the
#: metadata it makes two (the metadata, then the wheel). On a link of 40 ms
#: and 50 Mbit/s, 128 KiB cost ~20 ms of transfer against a round trip's
#: 40. sdists keep theirs (without it pip would build them to learn it), and
#: uv, which reads a wheel's metadata by range requests when it is not
#: offered, always gets it.
LEAN_BELOW = 128 * 1024


def _offers_metadata(f, lean):
    return f.core_metadata and not (lean and f.kind == "bdist_wheel" and f.size < LEAN_BELOW)


def render_project_html(name, files, yanks, status=None, lean=False):
    title = f"Links for {escape(name)}"
    head = _HEAD.format(title=title)
    if status is not None:
        meta = f'<meta name="pypi:project-status" content="{escape(status["status"])}">\n'
        if status.get("reason"):
            meta += (f'<meta name="pypi:project-status-reason" '
                     f'content="{escape(status["reason"], quote=True)}">\n')
        head = head.replace("<title>", meta + "<title>", 1)
    out = [head, f"<h1>{title}</h1>\n"]
    for f in sorted(served(files, status), key=_version_key):
        attrs = ""
        if f.requires_python:
            attrs += f' data-requires-python="{escape(f.requires_python, quote=True)}"'
        if _offers_metadata(f, lean):
            value = f"sha256={f.metadata_sha256}"
            attrs += f' data-dist-info-metadata="{value}" data-core-metadata="{value}"'
        if f.version in yanks:
            attrs += f' data-yanked="{escape(yanks[f.version], quote=True)}"'
        if f.provenance:
            attrs += f' data-provenance="{escape(provenance_url(f), quote=True)}"'
        href = f"../../{f.url_path}#sha256={f.sha256}"
        out.append(f'<a href="{escape(href, quote=True)}"{attrs}>{escape(f.filename)}</a><br>\n')
    out.append("</body>\n</html>\n")
    return "".join(out).encode("utf-8")


def render_project_json(name, files, yanks, status=None, lean=False):
    entries = []
    versions = set()
    for f in sorted(served(files, status), key=_version_key):
        versions.add(f.version)
        metadata = {"sha256": f.metadata_sha256} if _offers_metadata(f, lean) else False
        yanked = yanks.get(f.version)
        entries.append({
            "filename": f.filename,
            "url": f"../../{f.url_path}",
            "hashes": {"sha256": f.sha256},
            "requires-python": f.requires_python,
            "core-metadata": metadata,
            "dist-info-metadata": metadata,
            "yanked": (yanked or True) if yanked is not None else False,
            "size": f.size,
            "upload-time": iso8601(f.upload_time),
            "provenance": provenance_url(f) if f.provenance else None,
        })
    page = {
        "meta": {"api-version": API_VERSION},
        "name": name,
        "versions": sort_versions(versions),
        "files": entries,
    }
    if status is not None:
        # No empty reason: uv would print "is archived: " with nothing after.
        page["project-status"] = {k: v for k, v in status.items() if k == "status" or v}
    return json.dumps(page, separators=(",", ":")).encode("utf-8")


RENDERERS = {
    HTML: (render_root_html, render_project_html),
    HTML_V1: (render_root_html, render_project_html),
    JSON: (render_root_json, render_project_json),
}
