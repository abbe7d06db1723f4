"""How the update runs: torch.compile of its hot functions and the matmul precision.

The update is five functions called in loops (posterior steps, imagination step) or
once on large batches (world-model heads, imagination losses, replay value loss), and
the image encoder.
Compiling them fuses their elementwise work; bf16 autocast runs their matmuls in
bf16 with fp32 parameters, losses and distributions, as the official code does.
Both are chosen once per agent; `off`/`fp32` give the plain eager path.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path

import torch


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 dot products (AVX512-BF16 or AMX), read from Linux."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `run.precision` on `device`, or None for fp32."""
    if setting == "fp32":
        return None
    if setting == "bf16":
        return torch.bfloat16
    # auto: bf16 where the hardware has it. On CPUs with native bf16 dot products the
    # CartPole loss curves of bf16 and fp32 overlap over 1200 updates
    # (benchmarks/compare_losses.py; README "Speed"), at 1.3-1.6x the update speed.
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None


def cxx_compiler() -> str | None:
    for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def resolve_compile(setting: str, device: torch.device) -> bool:
    """Whether to torch.compile the update for `run.compile` on `device`."""
    if setting != "auto":
        return setting == "on"
    if sys.platform == "win32" or device.type not in ("cpu", "cuda"):
        return False
    # Inductor builds its CPU kernels (and the CUDA path's host glue) with a C++ compiler
    return cxx_compiler() is not None


def use_persistent_cache() -> None:
    """Keep Inductor's compiled kernels across reboots, so a second run starts in seconds."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(default / "reverie" / "inductor"))


def compile_update(agent) -> None:
    """Replace the update's hot functions on `agent` by compiled versions (same maths).

    Shapes are fixed by the batch, so each compiles once (`dynamic=False`). Where
    compilation fails (no working compiler), Dynamo falls back to eager with a warning.
    """
    use_persistent_cache()
    import torch._dynamo
    import torch._inductor.config

    torch._dynamo.config.suppress_errors = True
    # draw random numbers with the eager kernels: a seed gives the same samples compiled
    # or not, so the two paths agree up to rounding (tests/test_accel.py)
    torch._inductor.config.fallback_random = True
    compile_ = functools.partial(torch.compile, dynamic=False)
    wm, behavior = agent.wm, agent.behavior
    wm.rssm.observe_steps = compile_(wm.rssm.observe_steps)
    if wm.encoder.spec.images:
        # fuses the norms, SiLUs and pooling between the convolutions (mkldnn kernels
        # either way): a 12m pixel update 1.15-1.18x faster, 1m unchanged
        wm.encoder.train_cnn = compile_(wm.encoder.cnn.forward)  # a function: no submodule
    wm.heads_loss = compile_(wm.heads_loss)
    behavior.imagine_step = compile_(behavior.imagine_step)
    behavior.imagination_loss = compile_(behavior.imagination_loss)
    behavior.replay_value_loss = compile_(behavior.replay_value_loss)


def describe(compiled: bool, precision: torch.dtype | None) -> str:
    """One line for the console: how the update runs and how to change it."""
    how = "compiled (the first update compiles, about a minute)" if compiled else "eager"
    dtype = "bf16 matmuls" if precision == torch.bfloat16 else "fp32"
    return f"update {how}, {dtype} (run.compile=auto|on|off, run.precision=auto|fp32|bf16)"
