"""
Prometheus metrics (GET /metrics), through prometheus_client.

One registry per server (not the library's global one), so that several
servers in one process (tests) keep their own counts.
"""

import gc
import time
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web.resource import Resource

from .urls import REPOSITORY_HEADS, SERVER_HEADS

_HEADS = frozenset(h.encode() for h in REPOSITORY_HEADS + SERVER_HEADS) | {b""}
_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"})

# Latency buckets for an index whose pages answer in well under a millisecond.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def route_of(method, path):
    """A small, fixed set of route names for a request (labels stay bounded)."""
    segments = path.split(b"?", 1)[0].strip(b"/").split(b"/")
    head = segments[0] if segments else b""
    if head not in _HEADS or (head == b"pypi" and not _json_api(segments)):
        segments = segments[1:]  # /R/...: the same routes under a repository
        head = segments[0] if segments else b""
    if method == b"POST" and (head in (b"", b"legacy") or segments == [b"simple"]):
        return "upload"  # POST /simple/: private-pypi's upload URL
    if head == b"simple":
        return "simple_root" if len(segments) == 1 else "simple_project"
    if head == b"packages":
        return "metadata" if segments[-1].endswith(b".metadata") else "file"
    if head == b"pypi":
        return "pypi_json"
    if head == b"_":
        return "oidc"
    if head in (b"yank", b"status", b"integrity", b"health", b"metrics"):
        return head.decode()
    if head == b"":
        return "home"
    return "other"


def _json_api(segments):
    """/pypi/NAME/json (a repository may be called pypi: /pypi/simple/... is its)."""
    return len(segments) == 3 and segments[2] == b"json"


class Metrics:
    """The server's counters, histograms and the state of its repositories."""

    def __init__(self, repositories=()):
        self.registry = CollectorRegistry(auto_describe=True)
        self.repositories = repositories  # read at scrape time (tap fills the list)
        # Requests are counted in plain dicts, read at scrape time: a
        # prometheus_client Counter and Histogram (locks, label lookups) cost
        # a tenth of answering an index page, for every request.
        self._requests = {}   # (route, method, status) -> count
        self._latency = {}    # route -> [count per bucket (+Inf last), sum of seconds]
        self._uploads = Counter(
            "ppypi_uploads", "Uploads by repository and outcome "
            "(stored, unchanged, conflict, rejected, too_large, no_space, failed)",
            ["repository", "outcome"], registry=self.registry)
        self._backend_errors = Counter(
            "ppypi_backend_errors", "Failed backend operations, by repository and operation",
            ["repository", "operation"], registry=self.registry)
        self._retries = Counter(
            "ppypi_backend_retries", "Requests to a backend that were tried again",
            ["repository"], registry=self.registry)
        self._mints = Counter(
            "ppypi_oidc_mints", "Trusted publishing token requests, by outcome "
            "(minted, invalid-payload, invalid-token, invalid-publisher, invalid-reuse-token, "
            "issuer-unreachable)", ["outcome"], registry=self.registry)
        self.registry.register(_ScrapeCollector(self))

    def request(self, method, path, status, seconds):
        route = route_of(method, path)
        if method not in _METHODS:
            method = b"other"  # labels stay bounded whatever clients invent
        key = (route, method, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        latency = self._latency.get(route)
        if latency is None:
            latency = self._latency[route] = [[0] * (len(BUCKETS) + 1), 0.0]
        latency[0][bisect_left(BUCKETS, seconds)] += 1
        latency[1] += seconds

    def upload(self, repository, outcome):
        self._uploads.labels(repository, outcome).inc()

    def backend_error(self, repository, operation):
        self._backend_errors.labels(repository, operation).inc()

    def mint(self, outcome):
        self._mints.labels(outcome).inc()

    def retry(self, repository):
        self._retries.labels(repository).inc()

    def render(self):
        return generate_latest(self.registry)


class _ScrapeCollector:
    """What is read at scrape time: the request counter and latency
    histogram from L{Metrics}' dicts, and gauges of the repositories."""

    def __init__(self, metrics):
        self._metrics = metrics

    def describe(self):
        return []

    def collect(self):
        yield from self._requests()
        yield from self._state()

    def _requests(self):
        requests = CounterMetricFamily(
            "ppypi_requests", "HTTP requests answered, by route, method and status",
            labels=["route", "method", "status"])
        for (route, method, status), count in sorted(self._metrics._requests.items()):
            requests.add_metric([route, method.decode("ascii"), str(status)], count)
        latency = HistogramMetricFamily(
            "ppypi_request_duration_seconds", "Time to answer a request, by route",
            labels=["route"])
        for route, (counts, total) in sorted(self._metrics._latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(BUCKETS + (float("inf"),), counts):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
            latency.add_metric([route], buckets, sum_value=total)
        return requests, latency

    def _state(self):
        files = GaugeMetricFamily("ppypi_files", "Files indexed", labels=["repository"])
        projects = GaugeMetricFamily("ppypi_projects", "Projects indexed", labels=["repository"])
        up = GaugeMetricFamily("ppypi_repository_up",
                               "1 when the repository's last sync succeeded", labels=["repository"])
        since = GaugeMetricFamily("ppypi_seconds_since_last_sync",
                                  "Seconds since the last successful sync (NaN: none yet)",
                                  labels=["repository"])
        now = time.time()
        for r in self._metrics.repositories:
            files.add_metric([r.name], len(r.index))
            projects.add_metric([r.name], len(r.index.projects))
            up.add_metric([r.name], 1 if r.healthy else 0)
            since.add_metric([r.name], now - r.last_sync if r.last_sync else float("nan"))
        mirror = {
            "hits": CounterMetricFamily(
                "ppypi_mirror_cache_hits", "A mirror's pages and files served from its cache",
                labels=["repository", "kind"]),
            "misses": CounterMetricFamily(
                "ppypi_mirror_cache_misses",
                "A mirror's pages and files fetched (or revalidated) upstream",
                labels=["repository", "kind"]),
            "upstream": CounterMetricFamily(
                "ppypi_mirror_upstream_requests", "Requests a mirror made to its upstream",
                labels=["repository"]),
            "errors": CounterMetricFamily(
                "ppypi_mirror_upstream_errors",
                "A mirror's upstream requests that failed (or sent bad bytes)",
                labels=["repository"]),
            "stale": CounterMetricFamily(
                "ppypi_mirror_stale_pages", "Pages served stale while the upstream failed",
                labels=["repository"]),
            "bytes": GaugeMetricFamily("ppypi_mirror_cache_bytes",
                                       "Bytes of files a mirror keeps", labels=["repository"]),
        }
        for r in self._metrics.repositories:
            m = getattr(r, "mirror", None)
            if m is None:
                continue
            c = m.counts
            mirror["hits"].add_metric([r.name, "page"], c["page_hits"])
            mirror["hits"].add_metric([r.name, "file"], c["file_hits"])
            mirror["misses"].add_metric([r.name, "page"],
                                        c["page_fetches"] + c["page_revalidated"])
            mirror["misses"].add_metric([r.name, "file"], c["file_fetches"])
            mirror["upstream"].add_metric([r.name], c["upstream_requests"])
            mirror["errors"].add_metric([r.name], c["upstream_errors"])
            mirror["stale"].add_metric([r.name], c["stale_served"])
            mirror["bytes"].add_metric([r.name], m.status().get("cache_bytes", 0))
        frozen = GaugeMetricFamily(
            "ppypi_heap_frozen_objects",
            "Objects moved out of the garbage collector's reach after a sync (ppypi.heap)")
        frozen.add_metric([], gc.get_freeze_count())
        return (files, projects, up, since, frozen, *mirror.values())


class MetricsResource(Resource):
    isLeaf = True

    def __init__(self, metrics):
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request):
        request.setHeader("Content-Type", CONTENT_TYPE_LATEST)
        request.setHeader("Cache-Control", "no-store")
        return self._metrics.render()
