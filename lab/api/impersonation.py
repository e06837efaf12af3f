"""Impersonation: ``Impersonate-User``, ``-Group``, ``-Uid`` and ``-Extra-<key>`` headers.

As kube-apiserver does it: each requested attribute needs verb ``impersonate`` on

* ``users`` (core group) named the user, or for ``system:serviceaccount:NS:NAME``
  ``serviceaccounts`` named NAME in namespace NS;
* ``groups`` (core group) named each group;
* ``uids`` (``authentication.k8s.io``) named the uid;
* ``userextras/<key>`` (``authentication.k8s.io``) named each value,

each checked for the real user, who gets a 403 for the first one not allowed. The
resulting user has exactly the requested groups, plus, when none were requested, a
service account's own groups; every impersonated user but ``system:anonymous`` is in
``system:authenticated`` (the anonymous user in ``system:unauthenticated``). Groups,
a uid or extras without ``Impersonate-User`` are a 400. Extra keys are percent-decoded
and lower-cased, as Kubernetes reads them.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import unquote

from multidict import CIMultiDictProxy

from lab.api.authz import Attributes
from lab.api.identity import (
    ANONYMOUS,
    AUTHENTICATED,
    SERVICE_ACCOUNT_PREFIX,
    UNAUTHENTICATED,
    UserInfo,
    service_account_user,
)
from lab.api.status import bad_request

__all__ = [
    "IMPERSONATE_EXTRA_PREFIX",
    "IMPERSONATE_GROUP",
    "IMPERSONATE_UID",
    "IMPERSONATE_USER",
    "impersonate",
]

IMPERSONATE_USER = "Impersonate-User"
IMPERSONATE_GROUP = "Impersonate-Group"
IMPERSONATE_UID = "Impersonate-Uid"
IMPERSONATE_EXTRA_PREFIX = "Impersonate-Extra-"
AUTH_GROUP = "authentication.k8s.io"


class _Checks(Protocol):
    def check(self, attrs: Attributes) -> None: ...


def _target(actor: UserInfo, name: str) -> Attributes:
    if name.startswith(SERVICE_ACCOUNT_PREFIX):
        namespace, sep, account = name[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
        if sep and namespace and account and ":" not in account:
            return Attributes(
                user=actor,
                verb="impersonate",
                group="",
                resource="serviceaccounts",
                namespace=namespace,
                name=account,
            )
    return Attributes(user=actor, verb="impersonate", group="", resource="users", name=name)


def _extras(headers: CIMultiDictProxy[str]) -> dict[str, list[str]]:
    extras: dict[str, list[str]] = {}
    prefix = IMPERSONATE_EXTRA_PREFIX.lower()
    for header, value in headers.items():
        if header.lower().startswith(prefix) and len(header) > len(prefix):
            extras.setdefault(unquote(header[len(prefix) :]).lower(), []).append(value)
    return extras


def impersonate(headers: CIMultiDictProxy[str], actor: UserInfo, authorizer: _Checks) -> UserInfo:
    """The user the request acts as: ``actor``, or whom it impersonates when allowed."""
    name = headers.get(IMPERSONATE_USER, "")
    groups = [g for g in headers.getall(IMPERSONATE_GROUP, []) if g]
    uid = headers.get(IMPERSONATE_UID)
    extras = _extras(headers)
    if not name:
        if groups or extras or uid is not None:
            asked = [IMPERSONATE_GROUP] if groups else []
            asked += [IMPERSONATE_UID] if uid is not None else []
            asked += [f"{IMPERSONATE_EXTRA_PREFIX}{key}" for key in sorted(extras)]
            raise bad_request(
                f"requested impersonation of {', '.join(asked)} without impersonating a user: "
                f"also send {IMPERSONATE_USER}"
            )
        return actor
    authorizer.check(_target(actor, name))
    for group in groups:
        authorizer.check(Attributes(user=actor, verb="impersonate", group="", resource="groups", name=group))
    if uid is not None:
        authorizer.check(
            Attributes(user=actor, verb="impersonate", group=AUTH_GROUP, resource="uids", name=uid)
        )
    for key, values in sorted(extras.items()):
        for value in values:
            authorizer.check(
                Attributes(
                    user=actor,
                    verb="impersonate",
                    group=AUTH_GROUP,
                    resource="userextras",
                    subresource=key,
                    name=value,
                )
            )
    result = list(groups)
    if not result and name.startswith(SERVICE_ACCOUNT_PREFIX):
        namespace, _, account = name[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
        result = [g for g in service_account_user(namespace, account).groups if g != AUTHENTICATED]
    marker = UNAUTHENTICATED if name == ANONYMOUS.name else AUTHENTICATED
    if marker not in result:
        result.append(marker)
    extra = tuple((key, tuple(values)) for key, values in sorted(extras.items()))
    return UserInfo(name, uid or "", tuple(result), extra)
