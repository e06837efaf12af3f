"""Chaos Toolkit probe for losing a node for good: what Kubernetes and the operator did about it.

``node_loss_handling`` stops the watch ``lose_node`` started and says how the lost
node's pods were moved, if they were (the out-of-service taint, a force deletion, the
Node deleted, or nobody), in the run folder's ``node-loss.json``. The actions it goes
with are in :mod:`probes.k8s.node_loss_actions`. The experiments and ``chaos discover``
reach the probe through this module; the code is in :mod:`probes.k8s.node_loss`.
"""

from __future__ import annotations

from probes.k8s.node_loss import node_loss_handling

__all__ = ["node_loss_handling"]
