"""
PEP 740 attestations: the ones an upload carries are verified, offline,
against the project's trusted publishers, and kept as the file's provenance
object (what C{GET /integrity/.../provenance} serves).

Verification is C{pypi-attestations}' (the library Warehouse uses) and
C{sigstore}'s, against a Sigstore trusted root read from a file: by default
the one the installed C{sigstore} package carries, never fetched at upload
time (an index that checks signatures must not depend on reaching
Sigstore's TUF repository, nor write to a home folder a daemon may not
have). Blocking (CPU): run in the thread pool.
"""

import base64
import hmac
import json
from importlib import resources

from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename,
                             parse_wheel_filename)

#: The statements PyPI accepts (Warehouse's SUPPORTED_ATTESTATION_TYPES).
PUBLISH_V1 = "https://docs.pypi.org/attestations/publish/v1"
SLSA_V1 = "https://slsa.dev/provenance/v1"
SUPPORTED = (PUBLISH_V1, SLSA_V1)

#: What a DSSE envelope of an attestation must carry.
IN_TOTO = "application/vnd.in-toto+json"

#: The provenance object's media type (PEP 740).
MEDIA_TYPE = "application/vnd.pypi.integrity.v1+json"

#: Sigstore's public-good instance, as the sigstore package names its files.
_PRODUCTION = "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"


class Refused(ValueError):
    """The attestations do not stand; the message says why (a 400)."""


def packaged_trusted_root():
    """The path of the trusted root the installed sigstore package carries."""
    return str(resources.files("sigstore") / "_store" / _PRODUCTION / "trusted_root.json")


def _parsed(filename):
    """A distribution filename as packaging parses it (names compared normalised)."""
    if filename.endswith(".whl"):
        return parse_wheel_filename(filename)
    return parse_sdist_filename(filename)


def publisher_model(publisher):
    """
    pypi-attestations' model of one of our publishers (L{ppypi.oidc}): it
    gives both the verification policy and the provenance's C{publisher}.
    """
    from pypi_attestations import GitHubPublisher, GitLabPublisher
    if publisher.issuer == "github":
        return GitHubPublisher(repository=publisher.repository, workflow=publisher.workflow,
                               environment=publisher.environment)
    return GitLabPublisher(repository=publisher.project, workflow_filepath=publisher.ci_config,
                           environment=publisher.environment)


def describe(provenance):
    """
    Who published a file, for people: ["acme/acme-tool, workflow
    release.yml", ...] from a provenance object's bundles.
    """
    found = []
    for bundle in provenance.get("attestation_bundles", ()):
        p = bundle.get("publisher") or {}
        if p.get("kind") == "GitHub":
            found.append(f"{p.get('repository')}, workflow {p.get('workflow')}")
        elif p.get("kind") == "GitLab":
            found.append(f"{p.get('repository')}, CI config {p.get('workflow_filepath')}")
        elif p.get("kind"):
            found.append(str(p.get("kind")))
    return found


def subjects(provenance):
    """
    The (name, sha256) pairs a provenance object's attestations name (their
    statements' subjects, unverified): what it says it is about.
    """
    found = set()
    for bundle in provenance.get("attestation_bundles", ()):
        for attestation in bundle.get("attestations", ()):
            try:
                statement = json.loads(base64.b64decode(attestation["envelope"]["statement"]))
                for subject in statement["subject"]:
                    found.add((subject["name"], subject["digest"]["sha256"]))
            except (KeyError, TypeError, ValueError):
                continue
    return found


def names_file(provenance, filename, sha256):
    """Is every attestation of a provenance object (JSON bytes) about this very file?"""
    try:
        about = subjects(json.loads(provenance))
    except (ValueError, AttributeError):
        return False
    try:
        wanted = _parsed(filename)
        return bool(about) and all(_parsed(n) == wanted and d == sha256 for n, d in about)
    except (InvalidSdistFilename, InvalidWheelFilename, TypeError):
        return False


class AttestationVerifier:
    """
    Checks an upload's C{attestations} field.

    @param trusted_root: path of a Sigstore C{trusted_root.json}; None for
        the one the installed sigstore package carries.
    """

    def __init__(self, trusted_root=None):
        self.trusted_root = trusted_root or packaged_trusted_root()
        self._verifier = None

    def _sigstore(self):
        if self._verifier is None:
            from sigstore.models import TrustedRoot
            from sigstore.verify import Verifier
            self._verifier = Verifier(trusted_root=TrustedRoot.from_file(self.trusted_root))
        return self._verifier

    def load(self):
        """Read the trusted root now (start-up), so that a bad file is said at once."""
        self._sigstore()

    def verify(self, field, filename, sha256, publishers):
        """
        Verify the attestations of an upload.

        @param field: the form field's text, a JSON array of attestations.
        @param filename: the uploaded file's name; C{sha256} its digest.
        @param publishers: the project's publishers (L{ppypi.oidc}).
        @return: the provenance object, as JSON bytes.
        @raise Refused: with the reason.
        """
        from pydantic import TypeAdapter, ValidationError
        from pypi_attestations import Attestation, AttestationBundle, Provenance
        try:
            attestations = TypeAdapter(list[Attestation]).validate_json(field)
        except ValidationError as e:
            first = e.errors()[0] if e.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise Refused(f"Malformed attestations: {first.get('msg', 'invalid')}"
                          + (f" at {where}" if where else "")) from None
        if not attestations:
            raise Refused("Malformed attestations: an empty attestation set is not permitted")
        if len(attestations) > len(SUPPORTED):
            raise Refused(f"Too many attestations: at most one of each type "
                          f"({', '.join(SUPPORTED)})")
        if not publishers:
            raise Refused("Attestations given, but the project has no trusted publishers "
                          "configured to verify them against")
        by_publisher = {}
        seen_types = set()
        for number, attestation in enumerate(attestations, 1):
            kind, publisher = self._one(attestation, filename, sha256, publishers, number)
            if kind in seen_types:
                raise Refused(f"Attestation {number}: more than one attestation of type {kind}")
            seen_types.add(kind)
            by_publisher.setdefault(publisher, []).append(attestation)
        bundles = [AttestationBundle(publisher=publisher_model(p), attestations=found)
                   for p, found in by_publisher.items()]
        return Provenance(attestation_bundles=bundles).model_dump_json().encode("utf-8")

    def _one(self, attestation, filename, sha256, publishers, number):
        """(predicate type, the publisher it verified for) of one attestation."""
        import sigstore.errors
        verifier = self._sigstore()
        try:
            bundle = attestation.to_bundle()
        except Exception as e:  # a certificate or envelope that does not parse
            raise Refused(f"Attestation {number}: malformed: {e}") from None
        reasons = []
        for publisher in publishers:
            policy = publisher_model(publisher)._as_policy()
            try:
                media_type, payload = verifier.verify_dsse(bundle, policy)
            except sigstore.errors.VerificationError as e:
                reasons.append(f"{publisher}: {e}")
                continue
            except Exception as e:  # e.g. a signature that is not even a signature
                raise Refused(f"Attestation {number}: does not verify: {e}") from None
            if media_type != IN_TOTO:
                raise Refused(f"Attestation {number}: expected an in-toto statement, "
                              f"got {media_type}")
            return self._statement(payload, filename, sha256, number), publisher
        raise Refused(f"Attestation {number} does not verify for any of the project's "
                      f"publishers ({'; '.join(reasons)})")

    @staticmethod
    def _statement(payload, filename, sha256, number):
        """Check the signed statement's subject is this file; return its predicate type."""
        try:
            statement = json.loads(payload)
            subjects = statement["subject"]
            kind = statement["predicateType"]
            if not isinstance(subjects, list) or not isinstance(kind, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise Refused(f"Attestation {number}: invalid statement") from None
        if len(subjects) != 1 or not isinstance(subjects[0], dict):
            raise Refused(f"Attestation {number}: the statement must have exactly one subject")
        subject = subjects[0]
        name = subject.get("name")
        try:
            same = isinstance(name, str) and _parsed(name) == _parsed(filename)
        except (InvalidSdistFilename, InvalidWheelFilename):
            same = False
        if not same:
            raise Refused(f"Attestation {number}: its subject {name!r} is not "
                          f"the uploaded file {filename!r}")
        digest = (subject.get("digest") or {}).get("sha256")
        if not isinstance(digest, str) or not hmac.compare_digest(digest, sha256):
            raise Refused(f"Attestation {number}: its subject's sha256 is not "
                          f"the uploaded file's")
        if kind not in SUPPORTED:
            raise Refused(f"Attestation {number}: unsupported predicate type {kind!r}")
        return kind
