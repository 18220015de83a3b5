"""The `report` stage's library: one run's results folder (results/<profile>) -> metric JSONs, tables, figures
and reports/README.md. No DVC here; torch only through paired.py (the metrics package it takes the paired
bootstrap from imports torch) and results.py (the method registry, where each method declares its label, its place
in the tables and whether it is a calibration row); matplotlib only in figures.py.

    results = results.load_results("results/smoke", params)   # the files the params name, one long table
    results = paired.load_results_with_pairs("results/smoke", params)   # + AUC-D minus SCAN's / centre prior's
    metrics = metrics.build_metrics(results)                   # {"explanations": {...}, "sanity": {...}, ...}
    tables = tables.build_tables(results, params)              # Tables I-IV, VI-IX beside the paper's values

figures.render_figures draws, readme.render_readme writes the README, compare.py diffs two metric trees for
CI, and tables.write_timing_table is Table V for the timing stage. This file imports nothing, so a stage
that imports one module depends on that module alone (see tests/test_dvc_deps.py).
"""
