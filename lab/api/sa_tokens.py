"""Service-account tokens: JWTs signed with ES256, with Kubernetes' claims.

A token is ``header.claims.signature`` (base64url without padding). The header is
``{"alg": "ES256", "kid": ...}`` (the key id is the base64url SHA-256 of the public key's
DER, as kube-apiserver computes it); the signature is the raw ``r || s`` of ECDSA P-256
over SHA-256. The claims are Kubernetes' own::

    {"aud": [...], "exp": ..., "iat": ..., "nbf": ..., "iss": ..., "jti": ...,
     "sub": "system:serviceaccount:NS:NAME",
     "kubernetes.io": {"namespace": NS, "serviceaccount": {"name", "uid"},
                       "pod": {"name", "uid"}}}

:meth:`ServiceAccountTokens.verify` checks what the token alone can prove: the
algorithm, the signature, the issuer, that one audience is the server's, and the time
window with kube-apiserver's 60 s leeway. Whether the service account and the bound pod
still exist is the authenticator's question (:mod:`lab.api.authn`, against the store).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from lab.api.identity import SERVICE_ACCOUNT_PREFIX
from lab.api.pki import load_ec_private_key
from lab.errors import LabError

__all__ = [
    "DEFAULT_ISSUER",
    "LEEWAY_SECONDS",
    "InvalidToken",
    "ServiceAccountClaims",
    "ServiceAccountTokens",
    "looks_like_jwt",
]

#: kube-apiserver's ``--service-account-issuer`` in kind and kubeadm clusters.
DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
#: go-jose's ``DefaultLeeway``: the clock skew allowed on ``exp`` and ``nbf``, and how long a
#: deleted service account or pod still backs its tokens.
LEEWAY_SECONDS = 60
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_COORDINATE = 32  # bytes of r and of s for P-256


class InvalidToken(LabError):
    """The token is not a valid service-account token of this server (the message says why)."""


@dataclass(frozen=True)
class ServiceAccountClaims:
    """What a verified token says: the service account, the pod it is bound to, its window."""

    namespace: str
    name: str
    uid: str
    pod_name: str
    pod_uid: str
    token_id: str
    issued_at: int
    not_before: int
    expires: int
    audiences: tuple[str, ...]

    @property
    def username(self) -> str:
        return f"{SERVICE_ACCOUNT_PREFIX}{self.namespace}:{self.name}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64URL.match(text):
        raise InvalidToken("a token segment is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken(f"a token segment is not base64url ({exc})") from None


def looks_like_jwt(token: str) -> bool:
    """Three non-empty base64url segments (what the JWT authenticator takes; others pass it by)."""
    parts = token.split(".")
    return len(parts) == 3 and all(_B64URL.match(p) for p in parts)


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken(f"the token {what} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"the token {what} is not a JSON object")
    return value


def _int_claim(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"the token has no numeric {name!r} claim")
    return int(value)


def _ref(value: Any) -> tuple[str, str]:
    if not isinstance(value, dict):
        return "", ""
    name, uid = value.get("name"), value.get("uid")
    return (name if isinstance(name, str) else ""), (uid if isinstance(uid, str) else "")


class ServiceAccountTokens:
    """Issue and verify service-account tokens with one ES256 signing key.

    ``audiences`` are the server's own (kube-apiserver's ``--api-audiences``): tokens are
    issued for them unless a request names others, and a token is accepted only when it
    names one of them. Default: the issuer.
    """

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        issuer: str = DEFAULT_ISSUER,
        audiences: Sequence[str] = (),
    ) -> None:
        self._key = key
        self._public = key.public_key()
        self.issuer = issuer
        self.audiences = tuple(audiences) or (issuer,)
        der = self._public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = _b64(hashlib.sha256(der).digest())

    @classmethod
    def from_key_file(
        cls, path: Path, issuer: str = DEFAULT_ISSUER, audiences: Sequence[str] = ()
    ) -> ServiceAccountTokens:
        """From the PEM P-256 signing key at ``path`` (LabError, one line, when it is not one)."""
        return cls(load_ec_private_key(Path(path)), issuer, audiences)

    def issue(
        self,
        namespace: str,
        name: str,
        uid: str,
        expiration_seconds: int,
        audiences: Sequence[str] = (),
        pod: tuple[str, str] | None = None,
        now: float | None = None,
    ) -> tuple[str, int]:
        """A token for service account ``namespace/name`` (``uid``), bound to ``pod`` (name, uid)
        when given, valid ``expiration_seconds`` from ``now``; returns (token, exp epoch seconds)."""
        issued = int(time.time() if now is None else now)
        expires = issued + int(expiration_seconds)
        private: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}}
        if pod is not None:
            private["pod"] = {"name": pod[0], "uid": pod[1]}
        claims = {
            "aud": list(audiences or self.audiences),
            "exp": expires,
            "iat": issued,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "nbf": issued,
            "sub": f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}",
        }
        header = {"alg": "ES256", "kid": self.key_id}
        signing_input = ".".join(
            _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        der = self._key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(_COORDINATE, "big") + s.to_bytes(_COORDINATE, "big")
        return f"{signing_input}.{_b64(signature)}", expires

    def _check_signature(self, token: str) -> dict[str, Any]:
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("a JWT has three segments")
        header = _json_object(_unb64(parts[0]), "header")
        if header.get("alg") != "ES256":
            raise InvalidToken(f"unexpected signing algorithm {header.get('alg')!r}")
        signature = _unb64(parts[2])
        if len(signature) != 2 * _COORDINATE:
            raise InvalidToken("the signature is not an ES256 signature")
        der = encode_dss_signature(
            int.from_bytes(signature[:_COORDINATE], "big"), int.from_bytes(signature[_COORDINATE:], "big")
        )
        try:
            self._public.verify(der, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise InvalidToken("the token's signature does not verify") from None
        return _json_object(_unb64(parts[1]), "claims")

    def verify(self, token: str, now: float | None = None) -> ServiceAccountClaims:
        """The claims of a token this server signed and still accepts; InvalidToken saying why not."""
        claims = self._check_signature(token)
        if claims.get("iss") != self.issuer:
            raise InvalidToken(f"the token's issuer {claims.get('iss')!r} is not {self.issuer!r}")
        aud = claims.get("aud")
        audiences = (aud,) if isinstance(aud, str) else tuple(a for a in aud or () if isinstance(a, str))
        if not set(audiences) & set(self.audiences):
            raise InvalidToken(f"the token's audiences {list(audiences)} are not this server's")
        current = time.time() if now is None else now
        expires, not_before = _int_claim(claims, "exp"), _int_claim(claims, "nbf")
        issued = _int_claim(claims, "iat")
        if current > expires + LEEWAY_SECONDS:
            raise InvalidToken("service account token has expired")
        if current < not_before - LEEWAY_SECONDS or current < issued - LEEWAY_SECONDS:
            raise InvalidToken("service account token is not valid yet")
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            raise InvalidToken("the token has no kubernetes.io claims")
        namespace = private.get("namespace")
        name, uid = _ref(private.get("serviceaccount"))
        if not isinstance(namespace, str) or not namespace or not name or not uid:
            raise InvalidToken("the token names no service account")
        if claims.get("sub") != f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}":
            raise InvalidToken("the token's subject is not its service account")
        if "secret" in private:
            raise InvalidToken("secret-bound tokens are not served by the lab")
        pod_name, pod_uid = _ref(private.get("pod"))
        if "pod" in private and (not pod_name or not pod_uid):
            raise InvalidToken("the token's pod reference has no name or uid")
        jti = claims.get("jti")
        return ServiceAccountClaims(
            namespace,
            name,
            uid,
            pod_name,
            pod_uid,
            jti if isinstance(jti, str) else "",
            issued,
            not_before,
            expires,
            audiences,
        )
