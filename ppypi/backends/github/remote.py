"""
The repository on GitHub as the backend's parts share it: the API client,
the repository's API path, its branch, the admin token, the thread runner,
the clock and the log; and what GitHub lets a token do there.
"""

from .api import GitHubError


class Remote:
    """
    @param config: the repository's L{RepositoryConfig} (owner, repo, branch,
        downloads, admin_secret).
    @param api: a L{GitHubAPI} for the configured api_url.
    @param log: the backend's Logger (one namespace for all its parts).
    """

    def __init__(self, config, api, run_in_thread, clock, log):
        self.name = config.name
        self.config = config
        self.settings = config.settings
        self.api = api
        self.run = run_in_thread
        self.clock = clock
        self.log = log
        self.path = f"/repos/{self.settings.owner}/{self.settings.repo}"

    @property
    def branch(self):
        return self.settings.branch

    @property
    def admin_token(self):
        return self.config.admin_secret.value if self.config.admin_secret else None

    def describe(self):
        return f"github {self.settings.owner}/{self.settings.repo}@{self.settings.branch}"

    async def permissions(self, token):
        """
        What GitHub grants C{token} on the repository: a set of "read" and
        "write", or None when the token is not valid for it.
        """
        try:
            response = await self.api.request("GET", self.path, token)
        except GitHubError as e:
            if e.status in (401, 403, 404):
                return None
            raise
        granted = (response.json() or {}).get("permissions") or {}
        scopes = set()
        if granted.get("pull") or granted.get("push") or granted.get("admin"):
            scopes.add("read")
        if granted.get("push") or granted.get("admin") or granted.get("maintain"):
            scopes.add("write")
        return frozenset(scopes) or None
