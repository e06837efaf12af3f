"""The lab's Kubernetes-API-compatible server (aiohttp) for kubectl, chaosk8s and lab controllers.

Start it with ``python -m lab.api --port 0 --data DIR --tls-cert-file F --tls-private-key-file F
--token-auth-file F --service-account-key-file F [--policy FILE] [--logs DIR]``
(first stdout line ``listening on https://127.0.0.1:<port>``, port also in
``DIR/apiserver.port``; :func:`ensure_pki` makes the CA, keys and certificate), or for tests
with ``--insecure-allow-all`` (plain HTTP, every request the admin); from Python with
:func:`start_api_server` (child process) or :func:`serve` (inside a running event loop);
point clients at it with :func:`write_kubeconfig`. Authentication, RBAC and the lab's
identities: "Lab security" in docs/ARCHITECTURE.md.

What clients written against the standard API must know:

* Status is written through the ``status`` subresource only (PUT/PATCH ``.../status``);
  the main resource ignores status changes and ``/status`` ignores everything else.
  Spec changes bump ``metadata.generation``; status and metadata changes do not.
* Pods: DELETE marks them terminating (``deletionTimestamp``); the kubelet confirms
  with ``DELETE ...?gracePeriodSeconds=0`` once the processes are gone. Pods without
  ``spec.nodeName`` go at once. ``--pod-removal-grace`` lets the server confirm instead.
* Pod logs are read from ``<logs>/<namespace>_<pod>.log`` (or ``..._<container>.log``).
* Field selectors: ``metadata.name``, ``metadata.namespace`` everywhere; pods
  ``spec.nodeName``, ``status.phase`` and a few more (:data:`lab.api.selectors.FIELDS`).
* Scheduling: POST a Binding to ``pods/{name}/binding``; cordon is ``spec.unschedulable``.
* Owners: dependents whose ``ownerReferences`` all point at deleted uids are deleted
  by the server; finalizers hold deletion until removed; PDB status is kept current.
"""

from lab.api.kubeconfig import write_kubeconfig
from lab.api.pki import ensure_pki
from lab.api.process import ApiServerProcess, start_api_server
from lab.api.server import bound_port, bound_url, build_app, serve
from lab.api.settings import Settings

__all__ = [
    "ApiServerProcess",
    "Settings",
    "bound_port",
    "bound_url",
    "build_app",
    "ensure_pki",
    "serve",
    "start_api_server",
    "write_kubeconfig",
]
