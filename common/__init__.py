"""Small helpers every package needs the same way: times, configuration values, CRD names.

This is the bottom layer. It imports nothing of the project's own, so ``lab``,
``loadgen``, ``probes`` and ``reports`` can all use it and agree on one behaviour.
"""
