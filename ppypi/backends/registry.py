"""
The kinds of repository this server knows, by the name used as C{type:} in
the configuration. Each backend module registers one L{BackendType}: its
own settings (validated by it, with the configuration's one-line errors),
its factory, and the access mode its store's own tokens give, if any.
L{ppypi.config} and L{ppypi.tap} ask this registry; neither names a backend.
"""

import importlib
from types import SimpleNamespace

# The backends that come with ppypi, imported on first use of the registry.
BUILTIN = ("ppypi.backends.filesystem", "ppypi.backends.github", "ppypi.backends.s3",
           "ppypi.backends.proxy")
# The kind of a repository whose configuration names none, and of the
# zero-configuration repository (a folder: ROOT).
DEFAULT = "filesystem"

_TYPES = {}


class BackendType:
    """
    One kind of repository.

    @param name: its C{type:} in the YAML configuration.
    @param keys: the keys of a repository's mapping that are its own.
    @param settings: C{f(checker, spec, key, root) -> settings} for the YAML
        mapping C{spec} at C{key}: validated, paths made absolute.
    @param factory: C{f(context) -> Backend} (a L{BackendContext}).
    @param store_mode: an access mode (C{read:}/C{write:} value) in which the
        password is a token of the store, checked by the backend's
        C{permissions}; None if the store has none.
    @param toml_name: its C{type} in private-pypi's TOML, if it had one.
    @param toml_keys: its keys there.
    @param toml_settings: C{f(checker, spec, key, root, name) -> (settings,
        {common setting: value})} for a TOML table (private-pypi gave some
        kinds their own access settings).
    @param check: C{f(checker, configs)} for rules between this kind's
        repositories (two folders may not be one).
    @param secret_keys: the keys of a credential of several parts in the
        admin secret (instead of C{raw}/C{env}); the repository's
        C{admin_secret} then holds a dict of them.
    @param secret_required: those of C{secret_keys} that must be given.
    @param mirror: its backends mirror another index (L{interface.Mirror}):
        other repositories may name it as their C{upstream}.
    """

    def __init__(self, name, keys, settings, factory, store_mode=None, toml_name=None,
                 toml_keys=(), toml_settings=None, check=None, secret_keys=(),
                 secret_required=(), mirror=False):
        self.name = name
        self.keys = frozenset(keys)
        self.settings = settings
        self.factory = factory
        self.store_mode = store_mode
        self.toml_name = toml_name
        self.toml_keys = frozenset(toml_keys)
        self.toml_settings = toml_settings
        self.check = check or (lambda checker, configs: None)
        self.secret_keys = frozenset(secret_keys)
        self.secret_required = frozenset(secret_required)
        self.mirror = mirror

    def __repr__(self):
        return f"BackendType({self.name!r})"


class BackendContext(SimpleNamespace):
    """
    What a backend factory is given: C{config} (the L{RepositoryConfig}),
    C{state_dir} (the repository's own folder of state and caches under
    ROOT), C{run_in_thread}, C{clock}, C{http} (a treq C{HTTPClient}, or
    None: make one), C{others} (the other repositories' configurations),
    C{on_retry} (call it when a request to the store is retried, for
    /metrics).
    """


def register(backend_type):
    """Make a kind of repository known (called by its module on import)."""
    _TYPES[backend_type.name] = backend_type
    return backend_type


def _load():
    for module in BUILTIN:
        importlib.import_module(module)


def _order(backend_type):
    module = backend_type.factory.__module__
    return BUILTIN.index(module) if module in BUILTIN else len(BUILTIN)


def types():
    """Every known kind: the built-in ones first, in BUILTIN's order."""
    _load()
    return sorted(_TYPES.values(), key=_order)


def get(name):
    """The kind called C{name} in YAML or (private-pypi) TOML, or None."""
    _load()
    found = _TYPES.get(name)
    if found is None:
        found = next((t for t in _TYPES.values() if t.toml_name == name), None)
    return found


def create(context):
    """A backend for C{context.config}, by its type's factory."""
    return get(context.config.type).factory(context)
