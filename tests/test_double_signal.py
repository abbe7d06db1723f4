"""Ctrl-C pressed twice (or three times), or SIGTERM then another: the first signal starts
the checkpoint save, the later ones cannot break it. Each run ends with status 130, one
closing line naming the env step saved, no traceback, and a checkpoint that loads.

The gaps run from back to back to 0.3 s: before this test, a second SIGTERM 0.01 s after
the first left no checkpoint at all (the message still said to resume from it), and one
0.05 s after killed the process while it shut down (status 143)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reverie import checkpoint
from reverie.interrupts import InterruptGuard

# (signals in order, seconds between them)
CASES = {
    "term-term-0s": ([signal.SIGTERM, signal.SIGTERM], 0.0),
    "term-term-0.01s": ([signal.SIGTERM, signal.SIGTERM], 0.01),
    "int-int-int-0.02s": ([signal.SIGINT, signal.SIGINT, signal.SIGINT], 0.02),
    "term-int-term-0.05s": ([signal.SIGTERM, signal.SIGINT, signal.SIGTERM], 0.05),
    "int-term-0.3s": ([signal.SIGINT, signal.SIGTERM], 0.3),
}
STARTED = "reverie: training"


def start(logdir: Path, err: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "reverie.cli", "train", "--logdir", str(logdir)]
    cmd += ["--steps", "1000000", "run.compile=off", "run.precision=fp32", "run.threads=1"]
    cmd += ["run.progress=false", "run.tensorboard=false", "run.eval_every=0"]
    cmd += ["run.checkpoint_every=1e9"]  # no checkpoint but the one the signal asks for
    # as from a terminal: a process started in the background (pytest-xdist's workers under
    # CI) ignores SIGINT, which its children would inherit, and reverie keeps it ignored
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=err.open("w"), preexec_fn=default_sigint
    )


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_training(procs: dict[str, tuple[subprocess.Popen, Path]]) -> None:
    deadline = time.time() + 120
    for proc, err in procs.values():
        while STARTED not in err.read_text() and proc.poll() is None:
            assert time.time() < deadline, err.read_text()
            time.sleep(0.1)
        assert proc.poll() is None, err.read_text()
    time.sleep(1.0)  # a few hundred env steps into the run


@pytest.mark.slow
def test_repeated_signals_cannot_break_the_save(tmp_path):
    # all cases at once: each run waits on its own signals, not on the others'
    procs = {}
    for name in CASES:
        (tmp_path / name).mkdir()
        err = tmp_path / name / "stderr.txt"
        procs[name] = (start(tmp_path / name / "run", err), err)
    try:
        wait_for_training(procs)
        for name, (sigs, gap) in CASES.items():
            proc, _ = procs[name]
            for i, sig in enumerate(sigs):
                if i:
                    time.sleep(gap)
                proc.send_signal(sig)
        for name, (proc, err) in procs.items():
            proc.wait(timeout=120)
            text = err.read_text()
            assert proc.returncode == 130, (name, text)
            assert "Traceback" not in text, (name, text)
            last = text.strip().splitlines()[-1]
            state = checkpoint.load_latest(tmp_path / name / "run")
            assert state is not None, (name, text)
            step = state["counters"]["step"]
            assert step > 0, (name, text)
            assert last == (
                f"reverie: interrupted; saved a checkpoint at env step {step} "
                f"({tmp_path / name / 'run' / checkpoint.CHECKPOINT}); "
                "rerun the same command to resume from it"
            ), (name, text)
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()


@pytest.fixture
def sigint_raises():
    """SIGINT handled as in an interactive Python, whatever this process inherited."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, inherited)


@pytest.mark.parametrize("raise_first", [True, False])
def test_guard_raises_once_then_counts_and_hands_its_count_outward(raise_first, sigint_raises):
    outer = InterruptGuard()
    with outer:
        with InterruptGuard(raise_first=raise_first) as inner:
            raised = 0
            for _ in range(3):
                try:
                    signal.raise_signal(signal.SIGINT)
                except KeyboardInterrupt:
                    raised += 1
            assert (raised, inner.count) == (int(raise_first), 3)
        assert outer.received  # the outer guard now ignores what comes
        signal.raise_signal(signal.SIGTERM)
        assert outer.count == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_the_process_ignores_stays_ignored(sigint_raises):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a shell's background job
    with InterruptGuard():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signal.raise_signal(signal.SIGINT)  # nothing happens
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
