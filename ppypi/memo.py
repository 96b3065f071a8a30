"""A bounded memo of a pure function of one value (a header, say)."""


class Memo(dict):
    """
    C{memo[value]} is C{function(value)}, remembered for the few values
    clients send (every pip sends the same Accept and User-Agent). Bounded:
    when C{size} values are kept it starts afresh (clients that invent
    values cannot crowd out the common ones for good); values longer than
    C{longest} are computed each time.
    """

    def __init__(self, function, size=256, longest=512):
        super().__init__()
        self._function = function
        self._size = size
        self._longest = longest

    def __missing__(self, key):
        value = self._function(key)
        if len(key) <= self._longest:
            if len(self) >= self._size:
                self.clear()
            self[key] = value
        return value
