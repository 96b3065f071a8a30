"""
Prometheus metrics (GET /metrics), through prometheus_client.

One registry per server (not the library's global one), so that several
servers in one process (tests) keep their own counts.
"""

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web.resource import Resource

_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"})

# Latency buckets for an index whose pages answer in well under a millisecond.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def route_of(method, path):
    """A small, fixed set of route names for a request (labels stay bounded)."""
    segments = path.split(b"?", 1)[0].strip(b"/").split(b"/")
    head = segments[0] if segments else b""
    if head not in (b"simple", b"packages", b"pypi", b"yank", b"health", b"metrics", b"legacy",
                    b"project", b""):
        segments = segments[1:]  # /R/...: the same routes under a repository
        head = segments[0] if segments else b""
    if method == b"POST" and head in (b"", b"legacy"):
        return "upload"
    if head == b"simple":
        return "simple_root" if len(segments) == 1 else "simple_project"
    if head == b"packages":
        return "metadata" if segments[-1].endswith(b".metadata") else "file"
    if head == b"pypi":
        return "pypi_json"
    if head in (b"yank", b"health", b"metrics"):
        return head.decode()
    if head == b"":
        return "home"
    return "other"


class Metrics:
    """The server's counters, histograms and the state of its repositories."""

    def __init__(self, repositories=()):
        self.registry = CollectorRegistry(auto_describe=True)
        self.repositories = list(repositories)
        self._requests = Counter(
            "ppypi_requests", "HTTP requests answered, by route, method and status",
            ["route", "method", "status"], registry=self.registry)
        self._latency = Histogram(
            "ppypi_request_duration_seconds", "Time to answer a request, by route",
            ["route"], buckets=BUCKETS, registry=self.registry)
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
        self._children = {}
        self.registry.register(_RepositoryCollector(self))

    def request(self, method, path, status, seconds):
        route = route_of(method, path)
        if method not in _METHODS:
            method = b"other"  # labels stay bounded whatever clients invent
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = (
                self._requests.labels(route, method.decode("ascii", "replace"), str(status)),
                self._latency.labels(route))
        child[0].inc()
        child[1].observe(seconds)

    def upload(self, repository, outcome):
        self._uploads.labels(repository, outcome).inc()

    def backend_error(self, repository, operation):
        self._backend_errors.labels(repository, operation).inc()

    def retry(self, repository):
        self._retries.labels(repository).inc()

    def render(self):
        return generate_latest(self.registry)


class _RepositoryCollector:
    """Gauges read from the repositories at scrape time."""

    def __init__(self, metrics):
        self._metrics = metrics

    def describe(self):
        return []

    def collect(self):
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
        yield from (files, projects, up, since)


class MetricsResource(Resource):
    isLeaf = True

    def __init__(self, metrics):
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request):
        request.setHeader("Content-Type", CONTENT_TYPE_LATEST)
        request.setHeader("Cache-Control", "no-store")
        return self._metrics.render()
