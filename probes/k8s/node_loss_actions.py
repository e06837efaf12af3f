"""Chaos Toolkit actions for losing a node for good: the fault and the way back.

``lose_node`` stops the node hosting the target tenant's pod and leaves it down (refused
unless ``allow_node_loss`` is true); ``restore_node`` (the rollback) starts it again,
waits until it is Ready and takes the out-of-service taint off. The probe that says how
the node's pods were moved is in :mod:`probes.k8s.node_loss_probes`. The experiments and
``chaos discover`` reach the actions through this module; the code, the experiment's
steps and the configuration are in :mod:`probes.k8s.node_loss`.
"""

from __future__ import annotations

from probes.k8s.node_loss import lose_node, restore_node

__all__ = ["lose_node", "restore_node"]
