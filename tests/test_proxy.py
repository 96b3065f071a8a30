"""
The proxy backend in process: the upstream's pages read as data (hostile
ones too), single-flight file fetches checked against the page's sha256,
the last byte held until the check, the cache budget, min_age; against
tests/fake_upstream.py on loopback, with the real reactor and treq.
"""

import hashlib
import json
import os

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import deferLater

from ppypi.backends import registry
from ppypi.backends.interface import BackendError, BadUpstream, LocalFile, Mirror, ReadOnly, Stream
from ppypi.backends.proxy import pages
from ppypi.backends.proxy import parse_duration
from ppypi.config import load_admin_secret, load_config

from .fake_upstream import HOSTILE, FakeUpstream


@pytest.fixture
def streamed(monkeypatch):
    """Every file flows to clients as it arrives (not only those over 1 MiB)."""
    import ppypi.backends.proxy.files
    monkeypatch.setattr(ppypi.backends.proxy.files, "WHOLE_FIRST", 0)


@pytest.fixture
def fake():
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()


def proxy(tmp_path, fake, **settings):
    extra = "".join(f", {k}: {v}" for k, v in settings.items())
    root = str(tmp_path / "root")
    config = load_config(f"repositories:\n  pypi: {{type: proxy, upstream: '{fake.index_url}'"
                         f"{extra}}}\n", root, is_text=True)
    rc, = config.repositories
    backend = registry.create(registry.BackendContext(
        config=rc, state_dir=os.path.join(root, ".ppypi", "repositories", "pypi"),
        run_in_thread=threads.deferToThread, clock=reactor, http=None, others=[],
        on_retry=None))
    backend.prepare()
    return backend


async def collect(found):
    if isinstance(found, LocalFile):
        try:
            return found.head + found.file.read()
        finally:
            found.file.close()
    chunks = []
    await found.deliver(chunks.append)
    return b"".join(chunks)


# -- pages are data --------------------------------------------------------------------


def test_a_json_page_is_read_into_checked_values():
    page = json.dumps({"meta": {"api-version": "1.1"}, "name": "acme", "files": [
        {"filename": "acme-1.0-py3-none-any.whl", "url": "../../files/acme-1.0-py3-none-any.whl",
         "hashes": {"sha256": "a" * 64}, "requires-python": ">=3.8", "yanked": "bad",
         "core-metadata": {"sha256": "b" * 64}, "size": 10,
         "upload-time": "2024-01-02T03:04:05.123456Z"},
        {"filename": "acme-2.0.tar.gz", "url": "https://files.example/acme-2.0.tar.gz",
         "hashes": {"md5": "c" * 32}},                                  # no sha256: left out
        {"filename": "other-1.0-py3-none-any.whl", "url": "x", "hashes": {"sha256": "d" * 64}},
        {"filename": "acme-3.0-py3-none-any.whl", "url": "javascript:alert(1)",
         "hashes": {"sha256": "e" * 64}},
        {"filename": "../../acme-4.0-py3-none-any.whl", "url": "x", "hashes": {"sha256": "f" * 64}},
        "not a file", {"filename": 7},
    ]}).encode()
    entries = pages.parse("acme", "application/vnd.pypi.simple.v1+json", page,
                          "https://up.example/simple/acme/")
    assert [e.filename for e in entries] == ["acme-1.0-py3-none-any.whl"]
    e = entries[0]
    assert e.url == "https://up.example/files/acme-1.0-py3-none-any.whl"
    assert (e.sha256, e.requires_python, e.yanked, e.metadata_sha256, e.size) == (
        "a" * 64, ">=3.8", "bad", "b" * 64, 10)
    assert e.upload_time == pytest.approx(1704164645.123456)


def test_an_html_page_is_read_into_checked_values():
    page = b"""<html><body>
<a href="https://up.example/f/acme-1.0-py3-none-any.whl#sha256=%s" data-requires-python="&gt;=3.8"
   data-yanked="" data-core-metadata="sha256=%s">acme-1.0-py3-none-any.whl</a>
<a href="/f/acme-2.0.tar.gz#md5=00">acme-2.0.tar.gz</a>
</body></html>""" % (b"a" * 64, b"b" * 64)
    entries = pages.parse("acme", "text/html", page, "https://up.example/simple/acme/")
    assert len(entries) == 1
    e = entries[0]
    assert (e.requires_python, e.yanked, e.metadata_sha256) == (">=3.8", "", "b" * 64)


@pytest_twisted.ensureDeferred
async def test_a_hostile_upstream_gives_only_checked_values(tmp_path, fake):
    fake.add("evil-pkg", "1.0")
    fake.hostile("evil-pkg")
    backend = proxy(tmp_path, fake)
    view = await backend.fetch_project("evil-pkg")
    names = sorted(d.filename for d in view.files)
    # The real file, and the hostile entries that are well-formed files of
    # evil-pkg with a sha256: their values checked, their markup dropped.
    assert "evil_pkg-1.0-py3-none-any.whl" in names
    assert all(n.startswith("evil_pkg-") and "/" not in n and "<" not in n for n in names)
    for d in view.files:
        assert d.location.startswith(("http://", "https://"))
        assert d.requires_python in (None, ">=3.8") and len(d.sha256) == 64
    for reason in view.yanks.values():
        assert "<" not in reason and ">" not in reason
    text = repr([(d.filename, d.requires_python) for d in view.files]) + repr(view.yanks)
    for key in ("script", "javascript_link", "markup_in_text", "img_onerror", "traversal",
                "other_project", "attribute_breakout"):
        assert HOSTILE[key] not in text, key


# -- files --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_files_are_fetched_once_checked_and_then_served_from_disk(tmp_path, fake,
                                                                       streamed):
    added = fake.add("acme-tool", "1.0", payload=os.urandom(300_000))
    backend = proxy(tmp_path, fake)
    view = await backend.fetch_project("acme-tool")
    dist, = view.files
    assert dist.sha256 == added.sha256 and dist.size == len(added.data)
    fake.reset()
    # Eight at once: one upstream request; each gets the whole file.
    asked = await DeferredList([Deferred.fromCoroutine(backend.download(dist))
                                for _ in range(8)], consumeErrors=True)
    assert all(ok for ok, _ in asked), asked
    founds = [found for _, found in asked]
    assert all(isinstance(f, Stream) for f in founds)
    results = await DeferredList([Deferred.fromCoroutine(collect(f)) for f in founds],
                                 consumeErrors=True)
    assert all(ok and data == added.data for ok, data in results)
    assert fake.count(r"\.whl$") == 1
    # Then from disk, with no request.
    again = await backend.download(dist, 0, 100)
    assert isinstance(again, LocalFile)
    assert await collect(again) == added.data
    assert fake.count(r"\.whl$") == 1
    assert backend.counts["file_fetches"] == 8 and backend.counts["file_hits"] == 1
    # Its core metadata, checked too.
    meta = await backend.read_metadata(dist.metadata_sha256, dist)
    assert hashlib.sha256(meta).hexdigest() == dist.metadata_sha256


@pytest_twisted.ensureDeferred
async def test_tampered_bytes_never_reach_a_client_whole_and_are_not_kept(tmp_path, fake,
                                                                         streamed):
    added = fake.add("acme-tool", "1.0", payload=os.urandom(200_000))
    backend = proxy(tmp_path, fake)
    dist, = (await backend.fetch_project("acme-tool")).files
    fake.tamper(added.filename)
    found = await backend.download(dist)
    got = []
    with pytest.raises(BadUpstream):
        await found.deliver(got.append)
    # Everything but the last byte may have gone; never the whole file.
    assert len(b"".join(got)) < len(added.data)
    assert not backend.cache.has(dist)
    assert os.listdir(backend.cache.incoming) == []
    fake.untamper(added.filename)
    assert await collect(await backend.download(dist)) == added.data
    assert backend.cache.has(dist)


@pytest_twisted.ensureDeferred
async def test_a_small_tampered_file_is_refused_before_any_byte(tmp_path, fake):
    added = fake.add("acme-tool", "1.0")
    backend = proxy(tmp_path, fake)
    dist, = (await backend.fetch_project("acme-tool")).files
    fake.tamper(added.filename)
    with pytest.raises(BadUpstream):
        await backend.download(dist)  # a 502 before the answer starts
    assert not backend.cache.has(dist)


@pytest_twisted.ensureDeferred
async def test_a_cached_files_metadata_needs_no_upstream(tmp_path, fake):
    fake.add("acme-tool", "1.0")
    backend = proxy(tmp_path, fake)
    dist, = (await backend.fetch_project("acme-tool")).files
    await collect(await backend.download(dist))
    fake.refuse()
    meta = await backend.read_metadata(dist.metadata_sha256, dist)
    assert hashlib.sha256(meta).hexdigest() == dist.metadata_sha256
    fake.accept()


@pytest_twisted.ensureDeferred
async def test_a_file_gone_upstream_is_missing_for_every_asker(tmp_path, fake):
    added = fake.add("acme-tool", "1.0")
    backend = proxy(tmp_path, fake)
    dist, = (await backend.fetch_project("acme-tool")).files
    fake.remove("acme-tool", added.filename)
    asked = await DeferredList([Deferred.fromCoroutine(backend.download(dist))
                                for _ in range(3)], consumeErrors=True)
    assert [type(r.value).__name__ for _, r in asked] == ["FileMissing"] * 3
    assert fake.count(r"\.whl$") == 1


@pytest_twisted.ensureDeferred
async def test_tampered_metadata_is_refused(tmp_path, fake):
    added = fake.add("acme-tool", "1.0")
    backend = proxy(tmp_path, fake)
    dist, = (await backend.fetch_project("acme-tool")).files
    fake.tamper(added.filename + ".metadata")
    with pytest.raises(BadUpstream):
        await backend.read_metadata(dist.metadata_sha256, dist)


@pytest_twisted.ensureDeferred
async def test_the_last_byte_waits_for_the_check(tmp_path, fake, streamed):
    added = fake.add("acme-tool", "1.0", payload=os.urandom(400_000))
    backend = proxy(tmp_path, fake)
    dist, = (await backend.fetch_project("acme-tool")).files
    fake.stall(path=r"\.whl$")  # headers and the first half, then it holds
    found = await backend.download(dist)
    got = []
    delivering = Deferred.fromCoroutine(found.deliver(got.append))
    fetch = backend.cache.fetches[dist.filename]
    for _ in range(500):  # until the first half is out to the client
        if fetch.written >= len(added.data) // 2 and len(b"".join(got)) >= fetch.written - 1:
            break
        await deferLater(reactor, 0.01, lambda: None)
    assert not delivering.called
    assert 0 < len(b"".join(got)) < len(added.data)
    fake.release()
    await delivering
    assert b"".join(got) == added.data


@pytest_twisted.ensureDeferred
async def test_the_least_recently_used_files_go_over_budget(tmp_path, fake):
    added = [fake.add("acme-tool", f"1.{i}", payload=os.urandom(50_000)) for i in range(4)]
    backend = proxy(tmp_path, fake, max_cache_bytes=120_000)
    dists = {d.filename: d for d in (await backend.fetch_project("acme-tool")).files}
    for a in added:
        assert await collect(await backend.download(dists[a.filename])) == a.data
        # Eviction runs when a file joins the cache, on its own: let it finish.
        for _ in range(300):
            if backend.cache.total <= 120_000:
                break
            await deferLater(reactor, 0.01, lambda: None)
    kept = [a.filename for a in added if backend.cache.has(dists[a.filename])]
    assert kept == [a.filename for a in added[-2:]]
    assert backend.cache.total <= 120_000
    # An evicted file is fetched again.
    assert await collect(await backend.download(dists[added[0].filename])) == added[0].data


@pytest_twisted.ensureDeferred
async def test_min_age_hides_recent_uploads(tmp_path, fake):
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc)
    fake.add("acme-tool", "1.0", upload_time=now - datetime.timedelta(days=30))
    fake.add("acme-tool", "2.0", upload_time=now - datetime.timedelta(hours=1))
    backend = proxy(tmp_path, fake, min_age="7d")
    view = await backend.fetch_project("acme-tool")
    assert [d.version for d in view.files] == ["1.0"]
    assert parse_duration("12h") == 43200 and parse_duration(90) == 90


@pytest_twisted.ensureDeferred
async def test_an_unreachable_upstream_serves_the_last_page_or_503(tmp_path, fake):
    fake.add("acme-tool", "1.0")
    backend = proxy(tmp_path, fake)
    assert isinstance(backend, Mirror)
    assert (await backend.fetch_project("acme-tool")).stale is None
    fake.refuse()
    view = await backend.fetch_project("acme-tool")
    assert view.stale and len(view.files) == 1
    with pytest.raises(BackendError) as raised:
        await backend.fetch_project("never-seen")
    assert raised.value.retry_after
    fake.accept()
    assert await backend.fetch_project("not-upstream") is None


@pytest_twisted.ensureDeferred
async def test_a_revalidation_is_conditional(tmp_path, fake):
    fake.add("acme-tool", "1.0")
    backend = proxy(tmp_path, fake)
    await backend.fetch_project("acme-tool")
    fake.reset()
    await backend.fetch_project("acme-tool")
    seen, = [r for r in fake.requests if "/simple/" in r.path]
    for _ in range(200):  # the fake records the status just after sending it
        if seen.status is not None:
            break
        await deferLater(reactor, 0.01, lambda: None)
    assert seen.status == 304
    assert backend.counts["page_revalidated"] == 1
    fake.add("acme-tool", "2.0")
    view = await backend.fetch_project("acme-tool")
    assert sorted(d.version for d in view.files) == ["1.0", "2.0"]


@pytest_twisted.ensureDeferred
async def test_a_mirror_takes_no_writes(tmp_path, fake):
    backend = proxy(tmp_path, fake)
    with pytest.raises(ReadOnly):
        await backend.store(None, None)
    with pytest.raises(ReadOnly):
        await backend.set_yank("acme-tool", "1.0", "x")


def test_private_upstream_credentials_go_to_its_host_only(tmp_path):
    config = load_config("repositories:\n  pypi: {type: proxy, upstream: "
                         "'https://private.example/simple/'}\n", str(tmp_path), is_text=True)
    load_admin_secret("pypi: {username: bot, password: s3cret}", config, is_text=True)
    rc, = config.repositories
    backend = registry.create(registry.BackendContext(
        config=rc, state_dir=str(tmp_path / "state"), run_in_thread=threads.deferToThread,
        clock=reactor, http=object(), others=[], on_retry=None))
    assert "Authorization" in backend._headers("https://private.example/simple/x/")
    assert "Authorization" not in backend._headers("https://files.example/x.whl")
    assert "s3cret" not in repr(rc)


@pytest_twisted.ensureDeferred
async def test_asking_for_metadata_starts_fetching_the_small_file(tmp_path, fake):
    added = fake.add("acme-tool", "1.0")
    backend = proxy(tmp_path, fake)
    dist, = (await backend.fetch_project("acme-tool")).files
    await backend.read_metadata(dist.metadata_sha256, dist)
    for _ in range(300):  # the prefetch lands in the cache on its own
        if backend.cache.has(dist):
            break
        await deferLater(reactor, 0.01, lambda: None)
    assert backend.cache.has(dist)
    fake.reset()
    assert await collect(await backend.download(dist)) == added.data
    assert fake.count(r"\.whl$") == 0
