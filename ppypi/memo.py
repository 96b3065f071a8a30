"""A bounded memo of a pure function of one value (a header, say)."""


class Memo(dict):
    """
    C{memo[value]} is C{function(value)}, remembered for the few values
    clients send (every pip sends the same Accept and User-Agent). Bounded:
    values past C{size}, or longer than C{longest}, are computed each time.
    """

    def __init__(self, function, size=256, longest=512):
        super().__init__()
        self._function = function
        self._size = size
        self._longest = longest

    def __missing__(self, key):
        value = self._function(key)
        if len(self) < self._size and len(key) <= self._longest:
            self[key] = value
        return value
