"""In-process servers for fast tests: the real resource tree, driven by StubTreq."""

import os

from treq.testing import StubTreq
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock

from ppypi.config import load_config
from ppypi.tap import build


def run_now(f, *args, **kwargs):
    """A thread runner that runs in the calling thread (deterministic tests)."""
    return maybeDeferred(f, *args, **kwargs)


class InProcess:
    """The daemon's parts, with a Clock for time and StubTreq for HTTP."""

    def __init__(self, root, config_text=None, extra_index_url="https://pypi.example/simple/"):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        if config_text is not None:
            path = os.path.join(self.root, "..", "ppypi-test.yaml")
            with open(path, "w") as f:
                f.write(config_text)
        else:
            path = None
        self.config = load_config(path, self.root)
        for rc in self.config.repositories:
            os.makedirs(rc.path, exist_ok=True)
        self.clock = Clock()
        options = {"root": self.root, "config": path, "extra-index-url": extra_index_url}
        self.repositories, self.site, self.timers = build(options, self.config, self.clock, run_now)
        self.treq = StubTreq(self.site.resource)

    @property
    def repository(self):
        return self.repositories[0]

    async def sync(self):
        for r in self.repositories:
            await r.sync()

    def start_timers(self):
        for t in self.timers:
            t.startService()

    def stop_timers(self):
        for t in self.timers:
            t.stopService()

    async def get(self, path, headers=None, method="GET"):
        """(response, body bytes) for a request to this server."""
        response = await self.treq.request(method, "http://ppypi.test" + path,
                                           headers=headers, allow_redirects=False)
        body = await response.content()
        return response, body
