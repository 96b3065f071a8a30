"""
Content negotiation for the simple index (PEP 691).

The index speaks three content types. A client names what it wants with
C{Accept} (q-values honoured; the C{latest} aliases resolve to v1) or with
C{?format=}, which wins. Without either, or when nothing named is
supported, the answer is C{text/html}: PEP 691's recommended default, the
one every installer, old or new, understands.
"""

JSON = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
HTML = "text/html"
SUPPORTED = (JSON, HTML_V1, HTML)
_ALIASES = {
    "application/vnd.pypi.simple.latest+json": JSON,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
}
# When a client likes several equally (*/*, say), prefer the answer every
# client understands.
_PREFERENCE = {HTML: 0, HTML_V1: 1, JSON: 2}
MAX_ACCEPT = 4096


def q_value(params):
    """The q of an Accept/Accept-Encoding entry's parameters (1 if none;
    0 for garbage or anything outside 0..1)."""
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def _parse_accept(header):
    """[(media type, q)] from an Accept header; garbage entries are skipped."""
    out = []
    for item in header[:MAX_ACCEPT].split(",")[:64]:
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        if "/" not in media:
            continue
        out.append((_ALIASES.get(media, media), q_value(parts[1:])))
    return out


def _quality(accepted, offer):
    """The q a client gives C{offer}: the most specific matching entry wins."""
    best = None  # (specificity, q)
    major = offer.split("/")[0]
    for media, q in accepted:
        if media == offer:
            spec = 2
        elif media == f"{major}/*":
            spec = 1
        elif media == "*/*":
            spec = 0
        else:
            continue
        if best is None or spec > best[0]:
            best = (spec, q)
    return best[1] if best else 0.0


class NotAcceptableFormat(ValueError):
    """A ?format= naming no supported content type."""


def negotiate(accept, format_param=None):
    """
    Choose the content type of a simple-index answer.

    @param accept: the Accept header (str or None).
    @param format_param: the C{format} query parameter (str or None).
    @raise NotAcceptableFormat: C{format_param} names nothing supported.
    """
    if format_param is not None:
        # An unescaped "+" in a query string arrives as a space; content
        # types have no spaces, so it can only have been a "+".
        wanted = format_param.strip().lower().replace(" ", "+")
        chosen = _ALIASES.get(wanted, wanted)
        if chosen not in SUPPORTED:
            raise NotAcceptableFormat(format_param)
        return chosen
    if not accept:
        return HTML
    accepted = _parse_accept(accept)
    scored = [(_quality(accepted, offer), -_PREFERENCE[offer], offer) for offer in SUPPORTED]
    q, _, offer = max(scored)
    if q <= 0.0:
        return HTML
    return offer
