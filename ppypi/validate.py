"""
Checking configuration values: every mistake is a L{ConfigError} naming the
file, the key and the problem, so that start-up stops with one line a
person can act on. Used by L{ppypi.config} and by each backend type for its
own settings.
"""

import math

ANYONE = "anyone"
AUTHENTICATED = "authenticated"


class ConfigError(Exception):
    """A configuration mistake: where it is, which key, and what is wrong."""

    def __init__(self, source, key, problem):
        super().__init__(source, key, problem)
        self.source = source
        self.key = key
        self.problem = problem

    def __str__(self):
        if self.key:
            return f"{self.source}: {self.key}: {self.problem}"
        return f"{self.source}: {self.problem}"


class Secret:
    """A credential whose repr never shows its value."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return "Secret(<hidden>)"

    def __eq__(self, other):
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self):
        if isinstance(self.value, dict):  # a credential of several parts
            return hash(tuple(sorted(self.value.items())))
        return hash(self.value)


class Checker:
    def __init__(self, source):
        self.source = source

    def fail(self, key, problem):
        raise ConfigError(self.source, key, problem)

    def mapping(self, value, key):
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping, not {kind(value)}")
        return value

    def string(self, value, key, nonempty=True):
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {kind(value)}")
        if nonempty and not value:
            self.fail(key, "must not be empty")
        return value

    def number(self, value, key, integer=False, minimum=None):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"must be a number, not {kind(value)}")
        if integer and not isinstance(value, int):
            self.fail(key, "must be a whole number")
        if not math.isfinite(value):
            self.fail(key, "must be a finite number")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum}")
        return value

    def boolean(self, value, key):
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {kind(value)}")
        return value

    def unknown(self, mapping, allowed, key):
        for k in mapping:
            if k not in allowed:
                where = f"{key}.{k}" if key else str(k)
                self.fail(where, "unknown key (known: " + ", ".join(sorted(allowed)) + ")")

    def access(self, value, key, store_mode=None):
        """
        anyone, authenticated, a list of users, or the backend's own access
        mode (C{store_mode}, e.g. github: the password is the store's token).
        """
        if isinstance(value, str):
            allowed = {ANYONE, AUTHENTICATED} | ({store_mode} if store_mode else set())
            if value not in allowed:
                self.fail(key, f"must be {', '.join(sorted(allowed))} or a list of users, not {value!r}")
            return value
        if isinstance(value, list):
            for i, user in enumerate(value):
                self.string(user, f"{key}[{i}]")
            return tuple(value)
        self.fail(key, f"must be a string or a list of users, not {kind(value)}")


def kind(value):
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)
