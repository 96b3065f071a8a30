"""Domain errors with an HTTP status; one handler turns them into answers."""


class HTTPError(Exception):
    """An answer other than success: status, a one-line reason, headers."""

    code = 400

    def __init__(self, message, code=None, headers=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})


class NotFound(HTTPError):
    code = 404


class Unavailable(HTTPError):
    code = 503

    def __init__(self, message, retry_after=30):
        super().__init__(message, headers={"Retry-After": str(int(retry_after))})


class Unauthorized(HTTPError):
    code = 401

    def __init__(self, message="Authentication required"):
        super().__init__(message, headers={"WWW-Authenticate": 'Basic realm="ppypi"'})


class Forbidden(HTTPError):
    code = 403
