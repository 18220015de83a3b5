"""The DVC stages' entry points, one module per stage: `python -m scanbench.stages.<stage> ...` (dvc.yaml's cmds).

A stage parses its command line and params (`_cli`, shared by all), calls the library and writes its outputs
through scanbench.io. Running as a module of the package imports `scanbench` (its instruction-set pins) before
torch. `compare_metrics` is CI's check of a run's metrics against the committed reference, not a DVC stage.
"""
