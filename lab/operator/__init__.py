"""The lab's MSSQL operator: reconciles MSSQLInstance custom resources.

Run as ``python -m lab.operator`` (in the lab, the container of image
``mssql-lab/operator`` in Deployment ``mssql-operator``); it finds the API server
the in-cluster way (``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT``) or from
``--server``/``--kubeconfig``. What it creates is in :mod:`lab.operator.objects`,
how it decides in :mod:`lab.operator.reconcile`; the permissions it needs are the
ClusterRole in ``lab/crds/operator.yaml`` (and nothing more). Backups and policies are
in :mod:`lab.operator.protection`, restores in :mod:`lab.operator.restores`.

Two policies a user sees:

* A target the operator creates for a restore (``createTarget``) is labelled
  ``mssql.example.com/role: restore-target``: it is a copy made for someone to look at,
  never a tenant, and the harness's tenant discovery leaves it out.
* The target of a failed restore is kept, stopped and marked failed for inspection, not
  deleted and never Ready: annotation ``mssql.example.com/restore-failed``, phase
  ``RestoreFailed``, ``Ready=False`` with reason ``RestoreFailed``, 0 replicas, its
  volume holding the partial ``data.restoring`` and the restore's server log. The
  restore's ``status.reason`` is the executor's own (the FATAL line, the damaged WAL
  segment). A new restore into it, deleting it, or removing the annotation ends it.
"""

from lab.operator.objects import INSTANCES
from lab.operator.reconcile import Reconciler

__all__ = ["INSTANCES", "Reconciler"]
