"""
Storage backends: one module (or package) per kind of store, each behind
the interface in L{ppypi.backends.interface} and registered in
L{ppypi.backends.registry}.
"""

from .interface import (
    Backend, BackendError, Conflict, FileMissing, Listing, LocalFile, RateLimited, Redirect,
    StorageFull, Stored, Stream)

# The names every layer imports from here.
__all__ = ["Backend", "BackendError", "Conflict", "FileMissing", "Listing", "LocalFile",
           "RateLimited", "Redirect", "StorageFull", "Stored", "Stream"]
