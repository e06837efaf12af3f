"""The lab's MSSQL operator: reconciles MSSQLInstance custom resources.

Run as ``python -m lab.operator`` (in the lab, the container of image
``mssql-lab/operator`` in Deployment ``mssql-operator``); it finds the API server
the in-cluster way (``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT``) or from
``--server``/``--kubeconfig``. What it creates is in :mod:`lab.operator.objects`,
how it decides in :mod:`lab.operator.reconcile`; the permissions it needs are the
ClusterRole in ``lab/crds/operator.yaml`` (and nothing more).
"""

from lab.operator.objects import INSTANCES
from lab.operator.reconcile import Reconciler

__all__ = ["INSTANCES", "Reconciler"]
