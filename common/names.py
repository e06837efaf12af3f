"""Kubernetes' spelling of a name as an environment variable (``makeEnvVariableName``).

The kubelet's service links (``<NAME>_SERVICE_HOST``, :mod:`lab.kubelet.service_env`) and
the load manifests that refer to them (:mod:`loadgen.cluster_manifests`) must spell a
Service's name the same way.
"""

from __future__ import annotations

__all__ = ["env_name"]


def env_name(name: str) -> str:
    """A Service or port name as a variable name: ``harness-load-x`` -> ``HARNESS_LOAD_X``."""
    return name.replace("-", "_").upper()
