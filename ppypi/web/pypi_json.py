"""
Warehouse's JSON API (/pypi/NAME/json, /pypi/NAME/VERSION/json), for tools
such as Renovate and Dependabot that read it.
"""

import json
from datetime import datetime, timezone

from packaging.utils import parse_wheel_filename

from ..simple_pages import iso8601, sort_versions
from ..metadata import parse_metadata


def _python_version(f):
    if f.kind != "bdist_wheel":
        return "source"
    try:
        tags = parse_wheel_filename(f.filename)[3]
    except Exception:  # pragma: no cover - indexed names parse
        return "any"
    return ".".join(sorted({t.interpreter for t in tags}))


def file_entry(f, base_url, yanks):
    reason = yanks.get(f.version)
    return {
        "comment_text": "",
        "digests": {"sha256": f.sha256},
        "downloads": -1,
        "filename": f.filename,
        "has_sig": False,
        "packagetype": f.kind,
        "python_version": _python_version(f),
        "requires_python": f.requires_python,
        "size": f.size,
        "upload_time": datetime.fromtimestamp(f.upload_time, timezone.utc)
                               .strftime("%Y-%m-%dT%H:%M:%S"),
        "upload_time_iso_8601": iso8601(f.upload_time),
        "url": base_url + f.url_path,
        "yanked": reason is not None,
        "yanked_reason": reason or None,
    }


def metadata_file(files):
    """The file of a release whose metadata describes it (wheels first)."""
    with_metadata = [f for f in files if f.metadata_sha256]
    with_metadata.sort(key=lambda f: (f.kind != "bdist_wheel", f.filename))
    return with_metadata[0] if with_metadata else None


def info(name, version, raw_metadata, base_url, yanks):
    msg = parse_metadata(raw_metadata) if raw_metadata else None

    def get(field):
        value = msg.get(field) if msg is not None else None
        return str(value) if value is not None else None

    def get_all(field):
        values = msg.get_all(field) if msg is not None else None
        return [str(v) for v in values] if values else None

    description = get("Description")
    if msg is not None:
        payload = msg.get_payload()
        if isinstance(payload, str) and payload.strip():
            description = payload
    project_urls = {}
    for entry in get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if url.strip():
            project_urls[label.strip()] = url.strip()
    reason = yanks.get(version)
    return {
        "author": get("Author"),
        "author_email": get("Author-email"),
        "classifiers": get_all("Classifier") or [],
        "description": description,
        "description_content_type": get("Description-Content-Type"),
        "download_url": get("Download-URL"),
        "home_page": get("Home-page"),
        "keywords": get("Keywords"),
        "license": get("License"),
        "license_expression": get("License-Expression"),
        "maintainer": get("Maintainer"),
        "maintainer_email": get("Maintainer-email"),
        "name": get("Name") or name,
        "package_url": f"{base_url}project/{name}/",
        "platform": get("Platform"),
        "project_url": f"{base_url}project/{name}/",
        "project_urls": project_urls or None,
        "provides_extra": get_all("Provides-Extra"),
        "release_url": f"{base_url}project/{name}/{version}/",
        "requires_dist": get_all("Requires-Dist"),
        "requires_python": get("Requires-Python"),
        "summary": get("Summary"),
        "version": version,
        "yanked": reason is not None,
        "yanked_reason": reason or None,
    }


def render(name, files, version, raw_metadata, base_url, yanks, with_releases):
    """The JSON document, as bytes."""
    by_version = {}
    for f in files:
        by_version.setdefault(f.version, []).append(f)
    urls = [file_entry(f, base_url, yanks)
            for f in sorted(by_version[version], key=lambda f: f.filename)]
    doc = {
        "info": info(name, version, raw_metadata, base_url, yanks),
        "last_serial": 0,
        "urls": urls,
        "vulnerabilities": [],
    }
    if with_releases:
        doc["releases"] = {
            v: [file_entry(f, base_url, yanks) for f in sorted(by_version[v], key=lambda f: f.filename)]
            for v in sort_versions(by_version)
        }
    return json.dumps(doc, indent=1).encode("utf-8")
