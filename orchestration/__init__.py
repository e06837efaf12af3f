"""What drives a whole run: the Chaos Toolkit control (load around an experiment, the report after it).

This is the top layer: it imports load, probes and reports, and nothing imports it.
"""
