"""Reports of a chaos run: summary.json, report.md, plots and Prometheus metrics.

``reports.build.build(run_dir)`` (or ``python -m reports build RUN_DIR``) reads a run
folder and writes every output next to its inputs. The modules import nothing from
here, so importing the package does not load matplotlib.
"""
