"""
The daemon's log observer, where twistd would write its own: the same
lines, to the same place, with the timestamp formatted once a second.

Every access line is an event of its own (so that each line carries its
timestamp), and twistd's observer formats each event's time from scratch
(a timezone object and strftime: ~5 us, most of the cost of a line). The
text is the same to the byte: twistd's timestamps have whole seconds.
Installed only where twistd would write plain text to stdout (C{-n}
without C{--logfile}, as under systemd and in containers); a log file,
syslog or a C{--logger} of the user's stay twistd's own.
"""

import sys

from twisted.logger import FileLogObserver, formatEventAsClassicLogText, formatTime


class SecondCachedTime:
    """L{formatTime}, computed once per second of the clock."""

    def __init__(self):
        self._second = None
        self._text = None

    def __call__(self, when):
        if when is None:
            return formatTime(when)
        second = int(when)
        if second != self._second:
            self._text = formatTime(second)
            self._second = second
        return self._text


# The access log's events (ppypi.web.site) carry their text whole: no
# format to parse, the classic line is made directly.
LINE_FORMAT = "{line}"


def classic_text(time_text):
    """twistd's C{formatEventAsClassicLogText} with C{time_text} for the time."""

    def format_event(event):
        if event.get("log_format") == LINE_FORMAT:
            line = event.get("line")
            if isinstance(line, str) and line and "log_failure" not in event:
                system = event.get("log_system")
                if system is None:
                    level = event.get("log_level")
                    system = "{namespace}#{level}".format(
                        namespace=event.get("log_namespace", "-"),
                        level=level.name if level is not None else "-")
                return (f"{time_text(event.get('log_time'))} [{system}] "
                        f"{line.replace(chr(10), chr(10) + chr(9))}\n")
        return formatEventAsClassicLogText(event, time_text)

    return format_event


def text_observer(out):
    """twistd's text observer for C{out}, with L{SecondCachedTime}."""
    return FileLogObserver(out, classic_text(SecondCachedTime()))


def stdout_observer(twistd_options):
    """
    The observer for a daemon run by twistd with these options, or None to
    leave the choice to twistd.
    """
    if twistd_options.get("logger") or twistd_options.get("syslog"):
        return None
    if not twistd_options.get("nodaemon") or twistd_options.get("logfile") not in (None, ""):
        return None
    return text_observer(sys.stdout)
