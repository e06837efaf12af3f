"""Who a request comes from: the user the authenticator found, after impersonation.

Kubernetes' ``user.Info``: a name, a uid, groups and extra values. Every authenticated
user is also in ``system:authenticated``; requests without credentials are
``system:anonymous`` in ``system:unauthenticated`` (the lab answers them 401 except on
the health paths). ``system:masters`` is the group the RBAC authorizer never denies, as
in Kubernetes; the lab's admin credential carries it.

The authentication middleware stores the user on the request (:data:`USER`);
handlers read it with :func:`user_of`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

__all__ = [
    "ANONYMOUS",
    "AUTHENTICATED",
    "MASTERS",
    "UNAUTHENTICATED",
    "USER",
    "UserInfo",
    "service_account_user",
    "user_of",
]

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
MASTERS = "system:masters"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class UserInfo:
    """An authenticated (or anonymous) user: ``name``, ``uid``, ``groups``, ``extra``."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    def in_group(self, group: str) -> bool:
        return group in self.groups

    def extra_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.extra}

    def as_user_info(self) -> dict[str, object]:
        """The ``authentication.k8s.io/v1`` UserInfo shape (for reviews and audit)."""
        body: dict[str, object] = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            body["uid"] = self.uid
        if self.extra:
            body["extra"] = self.extra_dict()
        return body


ANONYMOUS = UserInfo("system:anonymous", groups=(UNAUTHENTICATED,))

#: The request key the authentication middleware stores the user under.
USER = web.RequestKey("lab_user", UserInfo)


def service_account_user(namespace: str, name: str, uid: str = "") -> UserInfo:
    """The user a service account's token authenticates as (``system:serviceaccount:NS:NAME``)."""
    return UserInfo(
        f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}",
        uid,
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
    )


def user_of(request: web.Request) -> UserInfo:
    """The request's user (anonymous when no middleware set one)."""
    return request.get(USER, ANONYMOUS)
