"""
The server's URL heads, in one list: the first segment of a path, which
says which part of the web layer answers it. Repository R's URLs are the
same under /R/; a repository may not be named after any of them.
"""

# Served for each repository (at / for the first, and under /R/).
REPOSITORY_HEADS = ("simple", "packages", "pypi", "project", "yank", "legacy", "status",
                    "integrity")
# Served once, by the server itself.
SERVER_HEADS = ("health", "metrics", "_")
# Not served yet, kept free for what comes next.
KEPT_HEADS = ("static",)

# "pypi" may name a repository all the same (a mirror of pypi.org is
# naturally called so): /pypi/NAME/json stays the first repository's JSON
# API, every other /pypi/... path is that repository's.
SHARED_HEAD = "pypi"
RESERVED_NAMES = frozenset(REPOSITORY_HEADS + SERVER_HEADS + KEPT_HEADS) - {SHARED_HEAD}
