"""
Storage backends: one module (or package) per kind of store, each behind
the interface in L{ppypi.backends.interface} and registered in
L{ppypi.backends.registry}.
"""

from .interface import (
    Backend, BackendError, BadUpstream, Conflict, FileMissing, Listing, LocalFile, Mirror,
    STATUSES, RateLimited, ReadOnly, Redirect, StorageFull, Stored, Stream)

# The names every layer imports from here.
__all__ = ["Backend", "BackendError", "BadUpstream", "Conflict", "FileMissing", "Listing",
           "LocalFile", "Mirror", "RateLimited", "ReadOnly", "Redirect", "StorageFull",
           "STATUSES", "Stored", "Stream"]
