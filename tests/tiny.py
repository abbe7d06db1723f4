"""The tiny model: the smallest config that trains end to end in seconds on one core (model
sizes, batch shape and imagination horizon), for the tests (TINY in conftest.py adds the
test-only run settings) and for quick benchmark runs (benchmarks/ import this file by path).
Test data, so it lives beside the tests, not in the package; it imports nothing."""

TINY_MODEL = [
    "model.deter=32",
    "model.hidden=16",
    "model.classes=4",
    "model.stoch=4",
    "model.units=16",
    "model.depth=2",
    "model.blocks=4",
    "run.batch_size=4",
    "run.batch_length=8",
    "behavior.horizon=4",
]
