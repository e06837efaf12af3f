"""The ``default`` ServiceAccount of every namespace, as kube-controller-manager keeps it.

Every active namespace (no ``deletionTimestamp``, phase not ``Terminating``) gets a
ServiceAccount named ``default``, and gets it again when it is deleted: pods that name no
account run as ``default`` (:mod:`lab.kubelet.sa_token`), and a pod whose account is missing
does not start. Nothing else of the account is touched (like Kubernetes since 1.24, no
token Secret is made; pods get bound tokens through the TokenRequest API). A namespace that
is closing while the controller creates the account answers 403 ("being terminated") or
404; that namespace is left alone. Any other refusal (a 403 from RBAC) is logged by
:func:`~lab.controllers.loop.one_object`, under which each namespace is handled, and tried
again on the next pass.
"""

from __future__ import annotations

import logging

from lab.controllers.loop import Obj, is_terminating, one_object
from lab.kubeclient import ApiError, KubeClient

__all__ = ["DEFAULT", "ServiceAccountsController", "is_active_namespace"]

log = logging.getLogger(__name__)

#: The account every namespace has.
DEFAULT = "default"


def is_active_namespace(namespace: Obj) -> bool:
    """Not being deleted (Kubernetes creates nothing in a Terminating namespace)."""
    phase = (namespace.get("status") or {}).get("phase")
    return not is_terminating(namespace) and phase != "Terminating"


class ServiceAccountsController:
    """Ensures ``default`` in every active namespace (see the module doc)."""

    name = "serviceaccount"
    interval = 1.0
    watches: tuple[str, ...] = ("namespaces", "serviceaccounts")

    def __init__(self, client: KubeClient, accounts: tuple[str, ...] = (DEFAULT,)) -> None:
        self.client = client
        self.accounts = accounts

    def reconcile_once(self) -> None:
        have = {
            (a["metadata"]["namespace"], a["metadata"]["name"]) for a in self.client.list("serviceaccounts")
        }
        for namespace in self.client.list("namespaces"):
            if not is_active_namespace(namespace):
                continue
            name = namespace["metadata"]["name"]
            for account in self.accounts:
                if (name, account) in have:
                    continue
                with one_object(self.name, namespace):
                    self._create(name, account)

    def _create(self, namespace: str, account: str) -> None:
        body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}}
        try:
            self.client.create("serviceaccounts", body, namespace)
        except ApiError as exc:
            closing = exc.code == 403 and "terminat" in str(exc)
            if closing or exc.code in (404, 409):  # a namespace going or gone, or someone else made it
                log.debug("serviceaccount %s/%s not created: %s", namespace, account, exc)
                return
            raise
        log.info("created serviceaccount %s/%s", namespace, account)
