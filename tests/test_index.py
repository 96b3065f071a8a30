"""The index's page cache: bounded by bytes, least recently used out first,
and never serving a page older than the files it lists."""

from ppypi.domain import DistFile
from ppypi.index import Page, PageCache, RepositoryIndex
from ppypi.simple_pages import HTML, JSON


def page(size):
    return Page(b"x" * size, HTML, 0)


def test_the_cache_stays_within_its_budget_dropping_the_least_recently_used():
    cost = PageCache.cost(page(1000))
    cache = PageCache(budget=cost * 3)
    for key in "abc":
        cache.put(key, page(1000))
    assert cache.get("a") is not None          # a is now the most recently used
    cache.put("d", page(1000))                 # over budget: b goes, not a
    assert cache.get("b") is None
    assert all(cache.get(k) is not None for k in "acd")
    assert len(cache) == 3 and cache.bytes == 3 * cost <= cache.budget


def test_replacing_and_popping_keep_the_byte_count_true():
    cache = PageCache(budget=10**9)
    cache.put("a", page(1000))
    cache.put("a", page(5000))
    cache.pop("a")
    cache.pop("never there")
    assert (len(cache), cache.bytes) == (0, 0)


def test_a_page_larger_than_the_budget_is_still_kept_alone():
    """The page just rendered is answered and kept; only older ones go."""
    cache = PageCache(budget=100)
    cache.put("a", page(10))
    cache.put("big", page(10_000))
    assert cache.get("a") is None and cache.get("big") is not None


def dist(project, version):
    filename = f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
    return DistFile(filename, project, version, "bdist_wheel", "ab" * 32, 1000, 0)


def test_an_index_over_budget_renders_again_and_stays_right():
    """With room for a few pages only, a crawl of every project in two
    content types keeps the cache within budget and every answer right,
    including a page rendered again after a change to its project."""
    index = RepositoryIndex("r", clock=lambda: 1_700_000_000.0, page_cache_bytes=20_000)
    names = [f"p{i:03d}" for i in range(200)]
    index.replace([dist(n, v) for n in names for v in ("1.0", "2.0")])
    for _ in range(2):
        for n in names:
            for ctype in (HTML, JSON):
                body = index.project_page(n, ctype).body
                assert f"{n.replace('-', '_')}-2.0-py3-none-any.whl".encode() in body
                assert index._pages.bytes <= 20_000
    assert 0 < len(index._pages) < 2 * len(names)
    cached = index.project_page(names[-1], HTML)
    index.add(dist(names[-1], "3.0"))
    fresh = index.project_page(names[-1], HTML)
    assert fresh is not cached and b"-3.0-py3-none-any.whl" in fresh.body
    assert fresh.etag != cached.etag


def test_digests_are_checked_and_kept_as_bytes():
    """A file's digest must be a sha256 hex digest (any case; read back in
    lower case); a bad metadata digest loses only the PEP 658 metadata."""
    import pytest

    upper = DistFile("a-1.0-py3-none-any.whl", "a", "1.0", "bdist_wheel", "AB" * 32, 1, 0,
                     metadata_sha256="CD" * 32, core_metadata=True)
    assert (upper.sha256, upper.metadata_sha256, upper.core_metadata) == ("ab" * 32, "cd" * 32, True)
    for bad in ("ab" * 31, "ab " * 32, "zz" * 32, "", None, 42):
        with pytest.raises(ValueError):
            DistFile("a-1.0-py3-none-any.whl", "a", "1.0", "bdist_wheel", bad, 1, 0)
    lost = DistFile("a-1.0-py3-none-any.whl", "a", "1.0", "bdist_wheel", "ab" * 32, 1, 0,
                    metadata_sha256="not hex", core_metadata=True)
    assert (lost.metadata_sha256, lost.core_metadata) == (None, False)
