"""
Upload tokens: scoped to one repository and some (or all) of its projects,
with an expiry; made by `ppypi token create` or minted for a CI job by
trusted publishing (L{ppypi.oidc}). Used as pypi.org's are: the username
C{__token__} and the token as the password.

A token is 256 random bits; only its sha256 is kept (a fast hash is enough
for a value nobody can guess), in the store that holds the repository (its
backend's C{load_tokens}/C{update_tokens}), so every server sharing that
store honours it. A record::

    {"id": "tok-...", "sha256": "...", "projects": ["acme-tool"] or null,
     "expires": <unix time> or null, "description": "...", "created": <unix time>,
     "kind": "api" | "oidc", "jti": "...", "jti_expires": <unix time>}

Expired records are dropped by the next change. A minted token's record
keeps the JWT's C{jti} until the JWT itself expires: a JWT is never
exchanged twice, on any server of the store.
"""

import hashlib
import secrets
import time

PREFIX = "ppypi-"
# A minted token lives this long (as pypi.org's).
MINTED_SECONDS = 15 * 60


def new_token():
    """A fresh token and its record's id and hash."""
    token = PREFIX + secrets.token_urlsafe(32)
    return token, "tok-" + secrets.token_hex(6), digest(token)


def digest(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def live(record, now=None):
    """Is the record's token still valid?"""
    now = time.time() if now is None else now
    expires = record.get("expires")
    return expires is None or expires > now


def prune(records, now=None):
    """Drop expired records (a minted one stays while its JWT could be replayed)."""
    now = time.time() if now is None else now
    return {i: r for i, r in records.items()
            if live(r, now) or (r.get("jti_expires") or 0) > now}


def allows(record, project):
    projects = record.get("projects")
    return projects is None or project in projects


class TokenBook:
    """
    One repository's tokens, as last read from its store: C{check}
    answers on the reactor from memory; C{refresh} reads the store again
    (each sync, and after every change).
    """

    def __init__(self, backend):
        self.backend = backend
        self.records = {}
        self._by_hash = {}

    def _set(self, records):
        self.records = records
        self._by_hash = {r["sha256"]: r for r in records.values() if "sha256" in r}

    async def refresh(self):
        self._set(await self.backend.load_tokens())

    def check(self, token, now=None):
        """The live record of C{token}, or None."""
        if not token.startswith(PREFIX) or len(token) > 200:
            return None
        record = self._by_hash.get(digest(token))
        return record if record is not None and live(record, now) else None

    async def update(self, change):
        """Change the records in the store (C{change(records)} edits them); refresh."""
        def edit(records):
            pruned = prune(records)
            records.clear()
            records.update(pruned)
            return change(records)

        result = await self.backend.update_tokens(edit)
        await self.refresh()
        return result

    async def create(self, projects=None, expires=None, description="", kind="api",
                     jti=None, jti_expires=None, now=None, token=None):
        """
        Store a new token's record; return (token, record). C{token}: the
        same token as another repository's (a mint that matched both).
        """
        made, token_id, hashed = new_token()
        if token is None:
            token = made
        else:
            hashed = digest(token)
        record = {"id": token_id, "sha256": hashed,
                  "projects": sorted(projects) if projects is not None else None,
                  "expires": expires, "description": description[:200],
                  "created": time.time() if now is None else now, "kind": kind}
        if jti is not None:
            record.update(jti=jti, jti_expires=jti_expires)

        def change(records):
            if jti is not None and any(r.get("jti") == jti for r in records.values()):
                raise ReplayedToken(jti)
            records[token_id] = record

        await self.update(change)
        return token, record

    async def revoke(self, token_id):
        def change(records):
            record = records.pop(token_id, None)
            if record is None or "sha256" not in record:
                return False
            if record.get("jti") is not None:
                # The JWT it was minted for stays spent until it expires.
                records[token_id] = {"id": token_id, "jti": record["jti"],
                                     "jti_expires": record.get("jti_expires"),
                                     "expires": 0, "revoked": True}
            return True

        return await self.update(change)


class ReplayedToken(Exception):
    """A JWT whose jti was exchanged before."""
