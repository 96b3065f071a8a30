"""ppypi: a private Python package index that runs as a Twisted daemon."""

__version__ = "0.1.0"
