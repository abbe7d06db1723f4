"""Runtime policy: the device, the learner's threads, the matmul precision, and whether
and how the update's hot methods are compiled.

Each module names its own hot methods in `compiled_methods` (the posterior steps, the
world-model heads, the imagination step and losses, the replay value loss, the image
encoder on the update path); `compile_marked` compiles them. Compiling fuses their
elementwise work; bf16 autocast runs their matmuls in bf16 with fp32 parameters, losses
and distributions, as the official code does. Both are chosen once per agent;
`off`/`fp32` give the plain eager path.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from reverie.config import ConfigError
from reverie.machine import usable_cores


def _cpuinfo(field: str) -> str:
    """The first `field: value` line of Linux's /proc/cpuinfo ("" elsewhere)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((x.split(":", 1)[1].strip() for x in lines if x.startswith(field)), "")


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 dot products (AVX512-BF16 or AMX), read from Linux."""
    flags = set(_cpuinfo("flags").split())
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_kind() -> str:
    """The CPU as benchmarks name it: model, cores this process may use, and its widest
    vector and bf16 instructions (figures from two kinds are never one figure)."""
    flags = set(_cpuinfo("flags").split())
    widths = {"avx512f": "AVX512", "avx2": "AVX2", "avx": "AVX"}
    vector = next((name for flag, name in widths.items() if flag in flags), "no AVX")
    bf16 = [f.upper() for f in ("avx512_bf16", "amx_bf16") if f in flags]
    kind = f"{vector} + {' + '.join(bf16)}" if bf16 else f"{vector}, no native bf16"
    cores = usable_cores()
    return f"{_cpuinfo('model name') or 'unknown CPU'}, {cores} core{'s' * (cores != 1)}, {kind}"


def resolve_precision(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `run.precision` on `device`, or None for fp32."""
    if setting == "fp32":
        return None
    if setting == "bf16":
        return torch.bfloat16
    # auto: bf16 where the hardware has it: on CPUs with native bf16 dot products it
    # updates faster than fp32, with loss curves that follow fp32's (docs/speed.md;
    # benchmarks/compare_losses.py and benchmarks/results/cartpole_fp32_vs_bf16_losses.*)
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


def resolve_cudagraphs(setting: bool, device: torch.device) -> bool:
    """Whether the compiled update replays as CUDA graphs (`run.cudagraphs`); a one-line
    error off CUDA, where there are none."""
    if setting and device.type != "cuda":
        raise ConfigError(
            f"run.cudagraphs=true needs a CUDA device, and this run is on {device.type}: "
            "leave it false (CUDA graphs do not exist there)"
        )
    return bool(setting)


def use_persistent_cache() -> None:
    """Keep Inductor's compiled kernels across reboots, so a second run starts in seconds."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(default / "reverie" / "inductor"))


class CompiledMethod:
    """A method run through torch.compile, compiled on its first call. Where compilation
    fails (no working compiler, an unsupported op), one warning names the method and it
    runs eagerly from then on: same maths, only slower."""

    def __init__(
        self,
        method: Callable,
        name: str,
        backend: str | Callable = "inductor",
        cudagraphs: bool = False,
    ):
        self.eager, self.name = method, name
        # draw random numbers with the eager kernels: a seed gives the same samples compiled
        # or not, so the two paths agree up to rounding (tests/test_accel.py),
        # and leave the CPU kernels' thread count to run time: a run with another count than
        # the one that filled the cache (taskset, run.threads, env workers) reuses its
        # kernels instead of compiling for minutes (benchmarks/cold_start.py); the update's
        # speed is the same either way (benchmarks/results/inductor_options_avx2_2026-12-07.txt)
        options: dict[str, Any] | None = (
            {"fallback_random": True, "cpp.dynamic_threads": True}
            if backend == "inductor"
            else None
        )
        if options is not None and cudagraphs:
            options["triton.cudagraphs"] = True  # what mode="reduce-overhead" sets
        self.options, self.backend = options, backend
        self.compiled = self._compile()
        self.failure: str | None = None

    def _compile(self) -> Callable:
        # shapes are fixed by the batch, so each method compiles once
        return torch.compile(self.eager, dynamic=False, backend=self.backend, options=self.options)

    def set_options(self, options: dict[str, Any]) -> None:
        """Add Inductor `options` to this method's own, before its first call compiles it
        (benchmarks/ab_update.py compares them)."""
        if self.options is None:
            raise ValueError(f"{self.name} is not compiled by Inductor: it takes no options")
        self.options.update(options)
        self.compiled = self._compile()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failure is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - sorted by is_compile_error
                if not is_compile_error(e):
                    raise
                self.failure = describe_compile_error(e)
                warnings.warn(
                    f"reverie: torch.compile failed for {self.name} ({self.failure}); it runs "
                    "eagerly instead (run.compile=off skips compilation)",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return self.eager(*args, **kwargs)


def describe_compile_error(error: BaseException) -> str:
    """The first line of a compile error, the compiler's own where Inductor wraps it."""
    error = getattr(error, "inner_exception", None) or error
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def is_compile_error(error: Exception) -> bool:
    import torch._dynamo.exc

    kinds: list[type] = [torch._dynamo.exc.TorchDynamoException]
    try:
        from torch._inductor.exc import InductorError

        kinds.append(InductorError)
    except ImportError:
        pass
    return isinstance(error, tuple(kinds))


def run_eagerly(module: torch.nn.Module, failure: str) -> None:
    """Turn every compiled method of `module` to its eager path for good (`failure` says
    why)."""
    for sub in module.modules():
        for attr in getattr(sub, "compiled_methods", ()):
            method = getattr(sub, attr)
            if isinstance(method, CompiledMethod) and method.failure is None:
                method.failure = failure


def compile_marked(
    module: torch.nn.Module, backend: str | Callable = "inductor", cudagraphs: bool = False
) -> list[str]:
    """Compile the methods each submodule of `module` names in its `compiled_methods`
    (`cudagraphs`: each replays as a CUDA graph; CUDA only).

    Returns the compiled methods' names. Acting keeps every other path eager (any batch
    size, no compilation on the first policy step).
    """
    if backend == "inductor":
        use_persistent_cache()
    names = []
    for sub in module.modules():
        for attr in getattr(sub, "compiled_methods", ()):
            name = f"{type(sub).__name__}.{attr}"
            method = CompiledMethod(getattr(sub, attr), name, backend, cudagraphs)
            setattr(sub, attr, method)
            names.append(name)
    return names


def pick_device(name: str, local_rank: int | None = None) -> torch.device:
    """The torch device for `run.device` (auto: CUDA when available). In a data-parallel
    job (`local_rank` given) each rank of a host takes GPU `local_rank`."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device=cuda but no CUDA device is available; use run.device=cpu")
    device = torch.device(name)
    if device.type == "cuda" and local_rank is not None and device.index is None:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {local_rank} has no GPU of its own ({torch.cuda.device_count()} "
                "here): launch at most one process per GPU (torchrun --nproc-per-node)"
            )
        device = torch.device("cuda", local_rank)
    return device


def learner_threads(setting: int, env_workers: int, ranks_per_host: int = 1) -> int:
    """Intra-op threads for the learner (`run.threads`; 0: this rank's share of the cores,
    less its env workers).

    OpenMP threads spin while they wait: a learner thread on a core shared with a busy
    env worker slows the whole update, which then runs faster on fewer threads (and
    OMP_WAIT_POLICY=PASSIVE, which stops the spinning, slows the update on idle cores).
    So workers get cores of their own, and the ranks of one host split them.
    """
    if setting > 0:
        return int(setting)
    return max(1, usable_cores() // max(1, ranks_per_host) - env_workers)


def describe(compiled: bool, precision: torch.dtype | None, setting: str = "auto") -> str:
    """One line for the console: how the update runs, why where it is not compiled by
    default, and how to change it."""
    how = (
        "compiled (the first update compiles: minutes, or seconds from the cache)"
        if compiled
        else "eager"
    )
    if not compiled and setting == "auto" and sys.platform != "win32" and not cxx_compiler():
        how += " (torch.compile needs a C++ compiler and found none: install g++ to compile)"
    dtype = "bf16 matmuls" if precision == torch.bfloat16 else "fp32"
    return f"update {how}, {dtype} (run.compile=auto|on|off, run.precision=auto|fp32|bf16)"
