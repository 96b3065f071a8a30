"""
ppypi.logs: the daemon's own text observer, where twistd would write to
stdout: the same bytes as twistd's, the time formatted once a second.
"""

import io

import pytest
from twisted.application.service import Application
from twisted.logger import ILogObserver, LogLevel, formatTime, textFileLogObserver

from ppypi.logs import SecondCachedTime, stdout_observer, text_observer
from ppypi.tap import DaemonService, ThreadPoolService


def _event(when, text="GET /simple/ 200"):
    return {"log_format": "{line}", "line": text, "log_time": when,
            "log_namespace": "ppypi.web.site.IndexSite", "log_level": LogLevel.info}


@pytest.mark.parametrize("when", [1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.0,
                                  1_711_846_799.5, 1_711_846_800.5, 0.25, None])
def test_the_cached_time_is_twisteds(when):
    cached = SecondCachedTime()
    cached(1_600_000_000.5)  # something else first: the cache must move on
    assert cached(when) == formatTime(when)
    assert cached(when) == formatTime(when)


OTHER_EVENTS = [
    {"log_format": "{line}", "line": "", "log_time": 1_700_000_000.5},
    {"log_format": "{line}", "line": "a {brace} and a %s", "log_time": 1_700_000_000.5,
     "log_system": "-"},
    {"log_format": "{line}", "line": "no level", "log_time": 1_700_000_000.5,
     "log_namespace": "x"},
    {"log_format": "{line}", "line": 42, "log_time": 1_700_000_000.5},
    {"log_format": "{count} files", "count": 3, "log_time": 1_700_000_001.5,
     "log_namespace": "ppypi.repository", "log_level": LogLevel.warn},
    {"log_format": "{line}", "line": "with a failure", "log_time": 1_700_000_002.0,
     "log_failure": None},
    {"log_text": "no format", "log_time": 1_700_000_002.0},
]


def test_lines_are_twistds_to_the_byte():
    ours, theirs = io.StringIO(), io.StringIO()
    mine, twisted = text_observer(ours), textFileLogObserver(theirs)
    events = [_event(1_700_000_000 + i * 0.3, f"line {i}\nwith a second line")
              for i in range(50)]
    for event in events + OTHER_EVENTS[:-2]:
        mine(dict(event))
        twisted(dict(event))
    assert ours.getvalue() == theirs.getvalue()
    assert ours.getvalue().count("\n") == 100 + 4


@pytest.mark.parametrize("options, ours", [
    ({"nodaemon": True, "logfile": None}, True),
    ({"nodaemon": True, "logfile": ""}, True),
    ({"nodaemon": True, "logfile": "ppypi.log"}, False),
    ({"nodaemon": True, "logfile": "-"}, False),
    ({"nodaemon": False, "logfile": None}, False),
    ({"nodaemon": True, "logfile": None, "syslog": True}, False),
    ({"nodaemon": True, "logfile": None, "logger": "my.observer"}, False),
    ({}, False),
])
def test_installed_only_where_twistd_would_write_text_to_stdout(options, ours):
    assert (stdout_observer(options) is not None) is ours
    application = Application("ppypi")
    DaemonService(ThreadPoolService(None), twistd=options).setServiceParent(application)
    assert (application.getComponent(ILogObserver, None) is not None) is ours


def test_an_observer_set_on_the_application_is_kept():
    application = Application("ppypi")
    theirs = textFileLogObserver(io.StringIO())
    application.setComponent(ILogObserver, theirs)
    DaemonService(ThreadPoolService(None),
                  twistd={"nodaemon": True, "logfile": None}).setServiceParent(application)
    assert application.getComponent(ILogObserver) is theirs
