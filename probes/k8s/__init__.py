"""The project's Chaos Toolkit activities for Kubernetes: actions (faults) and probes."""
