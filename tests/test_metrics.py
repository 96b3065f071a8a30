"""/metrics from a live daemon after a mixed workload: the counts agree with what was sent."""

import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import get, make_corpus
from .helpers import basic, multipart_body, upload_fields, wheel_bytes
from .test_live_upload import get_post


def scrape(daemon):
    status, headers, body = get(daemon.url + "metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def test_metrics_count_what_was_sent(tmp_path, daemon_factory):
    root = tmp_path / "root"
    make_corpus(root, projects=3, versions=2)
    d = daemon_factory(root, "--extra-index-url", "")
    token = open(root / ".ppypi" / "upload-token").read().strip()
    before = scrape(d)
    for _ in range(5):
        assert get(d.url + "simple/bench-pkg-00001/")[0] == 200
    for _ in range(2):
        assert get(d.url + "simple/no-such-project/")[0] == 404
    assert get(d.url + "simple/")[0] == 200
    assert get(d.url + "packages/bench-pkg-00000/bench_pkg_00000-1.0.0-py3-none-any.whl")[0] == 200

    def upload(data, name="up_tool", auth=("__token__", token)):
        filename = f"{name}-1.0-py3-none-any.whl"
        ctype, body = multipart_body(upload_fields(name.replace("_", "-"), "1.0", data),
                                     [("content", filename, data)])
        headers = {"Content-Type": ctype}
        if auth:
            headers["Authorization"] = basic(*auth)
        return get_post(d.url, body, headers)[0]

    data = wheel_bytes("up_tool", "1.0")
    assert upload(data) == 200                                           # stored
    assert upload(data) == 200                                           # unchanged
    assert upload(wheel_bytes("up_tool", "1.0", requires_python=">=3.12")) == 409
    assert upload(b"not a zip") == 400                                   # rejected
    assert upload(data, auth=None) == 401
    after = scrape(d)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("ppypi_requests_total", route="simple_project", method="GET", status="200") == 5
    assert delta("ppypi_requests_total", route="simple_project", method="GET", status="404") == 2
    assert delta("ppypi_requests_total", route="simple_root", method="GET", status="200") == 1
    assert delta("ppypi_requests_total", route="file", method="GET", status="200") == 1
    assert delta("ppypi_requests_total", route="upload", method="POST", status="200") == 2
    assert delta("ppypi_request_duration_seconds_count", route="simple_project") == 7
    for outcome, count in (("stored", 1), ("unchanged", 1), ("conflict", 1), ("rejected", 1),
                           ("unauthorized", 1)):
        assert delta("ppypi_uploads_total", repository="default", outcome=outcome) == count, outcome
    assert value(after, "ppypi_files", repository="default") == 7
    assert value(after, "ppypi_projects", repository="default") == 4
    assert value(after, "ppypi_repository_up", repository="default") == 1
    assert 0 <= value(after, "ppypi_seconds_since_last_sync", repository="default") < 120
    # The daemon's first sync froze its heap (ppypi.heap): a bare daemon
    # tracks more objects than the threshold.
    assert value(after, "ppypi_heap_frozen_objects") > 50_000
    # The scrape itself is counted, under its own route.
    assert delta("ppypi_requests_total", route="metrics", method="GET", status="200") == 1


def test_backend_errors_are_counted(tmp_path, daemon_factory):
    root = tmp_path / "root"
    config = tmp_path / "ppypi.yaml"
    config.write_text("repositories:\n  default:\n    sync_interval: 0.2\n")
    d = daemon_factory(root, "--config", config, "--extra-index-url", "")
    os.rename(root, tmp_path / "gone")
    from .conftest import wait_for
    wait_for(lambda: value(scrape(d), "ppypi_backend_errors_total",
                           repository="default", operation="sync") >= 1,
             what="a failed sync to be counted")
    assert value(scrape(d), "ppypi_repository_up", repository="default") == 0


def test_latency_histogram_buckets_and_sum():
    """Each request lands in the first bucket whose bound holds it
    (Prometheus' "le"), cumulatively, with +Inf counting them all."""
    from ppypi.metrics import Metrics

    metrics = Metrics()
    for seconds in (0.0001, 0.0005, 0.0007, 0.02, 45.0):
        metrics.request(b"GET", b"/simple/a/", 200, seconds)
    metrics.request(b"BREW", b"/simple/", 405, 0.001)
    samples = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def bucket(le):
        return value(samples, "ppypi_request_duration_seconds_bucket",
                     route="simple_project", le=le)

    assert [bucket(le) for le in ("0.0005", "0.001", "0.01", "0.025", "30.0", "+Inf")] == \
        [2, 3, 3, 4, 4, 5]
    assert value(samples, "ppypi_request_duration_seconds_count", route="simple_project") == 5
    assert abs(value(samples, "ppypi_request_duration_seconds_sum", route="simple_project")
               - 45.0213) < 1e-9
    assert value(samples, "ppypi_requests_total", route="simple_project", method="GET",
                 status="200") == 5
    assert value(samples, "ppypi_requests_total", route="simple_root", method="other",
                 status="405") == 1


def test_a_client_that_leaves_before_the_answer_is_logged_and_counted(tmp_path):
    """twisted.web logs a request when it finishes; one whose client left
    first is logged with status 499 and counted all the same."""
    from twisted.internet.error import ConnectionDone
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport
    from twisted.python.failure import Failure
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET

    from ppypi.metrics import Metrics
    from ppypi.web.site import IndexSite

    class Never(Resource):
        isLeaf = True

        def render_GET(self, request):
            return NOT_DONE_YET

    metrics = Metrics()
    site = IndexSite(Never(), str(tmp_path), {"default": 1000}, metrics=metrics, reactor=Clock())
    channel = site.buildProtocol(None)
    channel.makeConnection(StringTransport())
    channel.dataReceived(b"GET /simple/slow/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert site._access_lines == []
    channel.connectionLost(Failure(ConnectionDone()))
    assert len(site._access_lines) == 1
    assert '"GET /simple/slow/ HTTP/1.1" 499 - ' in site._access_lines[0]
    assert metrics._requests == {("simple_project", b"GET", 499): 1}


@pytest.mark.parametrize("method, path, route", [
    (b"GET", b"/pypi/acme-tool/json", "pypi_json"),
    (b"GET", b"/R/pypi/acme-tool/json", "pypi_json"),
    # A repository called pypi (a mirror of pypi.org, as SPEC names it).
    (b"GET", b"/pypi/simple/acme-tool/", "simple_project"),
    (b"GET", b"/pypi/packages/acme-tool/acme_tool-1.0-py3-none-any.whl", "file"),
    (b"GET", b"/pypi/simple/", "simple_root"),
    (b"GET", b"/simple/acme-tool/", "simple_project"),
    (b"POST", b"/_/oidc/mint-token", "oidc"),
])
def test_route_names(method, path, route):
    from ppypi.metrics import route_of
    assert route_of(method, path) == route
