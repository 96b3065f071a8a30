"""
One repository's web layer: its parts, each a small application of its own
concern, and the resource that hands each request to the part that answers
it (by the URL's head, L{ppypi.urls}, and the method).
"""

from twisted.web.resource import Resource

from .context import RepositoryContext
from .jsonapi import JSONApp
from .packages import PackagesApp
from .people import PeopleApp
from .router import error_answer
from .errors import NotFound
from .integrity import IntegrityApp
from .simple import SimpleIndex
from .statuses import StatusApp
from .uploads import UploadApp
from .yanks import YankApp


class RepositoryApp:
    """
    The web layer of one repository (see L{RepositoryContext} for the
    parameters): the simple index, files, uploads, the JSON API, yanks and
    the pages for people, project statuses and provenance.
    """

    def __init__(self, repository, authenticator, run_in_thread, extra_index_url=None,
                 is_reserved=lambda name: False, metrics=None, token_path=None):
        self.ctx = RepositoryContext(repository, authenticator, run_in_thread, extra_index_url,
                                     is_reserved, metrics, token_path)
        self.simple = SimpleIndex(self.ctx)
        self.packages = PackagesApp(self.ctx)
        self.uploads = UploadApp(self.ctx)
        self.json = JSONApp(self.ctx)
        self.yanks = YankApp(self.ctx)
        self.statuses = StatusApp(self.ctx)
        self.integrity = IntegrityApp(self.ctx)
        self.people = PeopleApp(self.ctx)

    def resource(self):
        return RepositoryResource(self)


class RepositoryResource(Resource):
    """Each request to the part that answers it; the rest is a 404."""

    isLeaf = True

    def __init__(self, app):
        super().__init__()
        self._app = app
        people = app.people.app.resource()
        uploads = app.uploads.app.resource()
        self._simple = app.simple
        self._uploads = uploads
        self._by_head = {
            b"packages": app.packages.app.resource(),
            b"pypi": app.json.app.resource(),
            b"yank": app.yanks.app.resource(),
            b"status": app.statuses.app.resource(),
            b"integrity": app.integrity.app.resource(),
            b"project": people,
            b"legacy": uploads,
        }
        self._home = people

    def render(self, request):
        path = request.postpath
        head = path[0] if path else b""
        if head == b"simple":
            if request.method == b"POST" and path == [b"simple", b""]:
                return self._uploads.render(request)
            return self._simple.render(request)
        if head == b"" and len(path) <= 1:
            return (self._uploads if request.method == b"POST" else self._home).render(request)
        if head == b"packages":
            held = self._app.packages.held(request)
            if held is not None:
                return held
        part = self._by_head.get(head)
        if part is None:
            return error_answer(request, NotFound("no such page"))
        return part.render(request)
