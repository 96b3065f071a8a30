"""
Storage backends.

A backend lists the distribution files it holds (as L{ppypi.index.DistFile})
and opens them for reading. Every method returns a Deferred or is a
coroutine: the filesystem backend does its IO in a thread pool, the GitHub
backend over HTTP.
"""


class BackendError(Exception):
    """The backend cannot be reached or failed; clients get a 503."""


class FileMissing(Exception):
    """The index names a file that the backend no longer has."""
