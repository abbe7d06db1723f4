"""Sweeps: tasks x seeds x override grids, one `reverie train` run per cell under one root.

- `spec`: what a sweep is (ROOT/sweep.yaml), parsed from the command line and checked
- `grid`: the cells a spec expands into, their logdirs and `reverie train` commands
- `cells`: one cell's state on disk (ROOT/<cell>/sweep-cell.json, its train.log)
- `runner`: running cells on this machine, N at once, pinned to cores and GPUs
- `slurm`: running cells through submitit (Slurm, or its local executor)
- `progress`: the view of a running sweep: done, running, failed, ETA
- `suites`: the paper's settings per suite, for `reverie reproduce`
- `published`: the published DreamerV3 numbers (reverie/viz/reference_*.yaml)
- `stats`: mean, median, IQM and stratified-bootstrap confidence intervals
- `score`: the score table of a sweep (Markdown and JSON); `plot`: its curves
"""

from __future__ import annotations
