"""Chaos Toolkit probes of the alerting drill: the rules are loaded, the alert fires and resolves.

``alert_rules_loaded`` (steady state) requires every alert of the repository's rules
file to be loaded in Prometheus; ``wait_for_alert`` polls Prometheus and Alertmanager
until the alert naming the drill's backup is firing and received, within the rule's
``for:`` plus two scrape intervals; ``wait_for_alert_resolved`` waits until it has left
both. The actions they go with are in :mod:`probes.k8s.alert_drill_actions`. The
experiments and ``chaos discover`` reach the probes through this module; the code, the
drill's steps, ``alerting.json`` and the configuration are in :mod:`probes.k8s.alert_drill`.
"""

from __future__ import annotations

from probes.k8s.alert_drill import alert_rules_loaded, wait_for_alert, wait_for_alert_resolved

__all__ = ["alert_rules_loaded", "wait_for_alert", "wait_for_alert_resolved"]
