"""The fast update paths (torch.compile, bf16 autocast) agree with the plain eager one."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from reverie.accel import (
    CompiledMethod,
    compile_marked,
    cpu_has_bf16,
    cxx_compiler,
    resolve_compile,
    resolve_precision,
)
from reverie.agent import Agent
from reverie.specs import ActSpec, ObsSpec

from .conftest import random_batch, tiny_config

VEC = ObsSpec({"vector": 5}, {})
ACT = ActSpec(True, 3)


def updated(*overrides: str, updates: int = 2):
    """Losses of each update and the parameters after them, from seed 0."""
    cfg = tiny_config(*overrides)
    torch.manual_seed(0)
    agent = Agent(VEC, ACT, cfg, "cpu")
    batch = random_batch(cfg, VEC, ACT)
    losses = []
    for _ in range(updates):
        metrics, _ = agent.update(batch)
        losses.append({k: float(v) for k, v in metrics.items() if k.startswith("loss/")})
    params = torch.cat([p.detach().flatten() for p in agent.parameters()])
    return agent, losses, params


# the compiled update against the eager one: tests/test_default_path.py, at the default
# size and precision, whose kernels make install's warm-up has compiled


@pytest.mark.skipif(cxx_compiler() is None, reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.slow
def test_compiled_image_encoder_matches_eager():
    """The update's compiled CNN (`Encoder.train_cnn`) against the eager module: outputs
    and gradients; acting (no gradients) keeps the eager module."""
    spec = ObsSpec({}, {"image": (64, 64, 3)})
    cfg = tiny_config("run.compile=on")
    torch.manual_seed(0)
    agent = Agent(spec, ACT, cfg, "cpu")
    encoder = agent.wm.encoder
    assert isinstance(encoder.train_cnn, CompiledMethod)
    images = torch.randint(0, 255, (2, 3, 64, 64, 3), dtype=torch.uint8)

    def embed_and_grads(compiled: bool):
        train_cnn = encoder.train_cnn
        encoder.train_cnn = train_cnn if compiled else train_cnn.eager
        encoder.zero_grad(set_to_none=True)
        out = encoder({"image": images})
        out.square().mean().backward()
        encoder.train_cnn = train_cnn
        return out.detach(), [p.grad.clone() for p in encoder.cnn.parameters()]

    (ref, ref_grads), (out, grads) = embed_and_grads(False), embed_and_grads(True)
    assert torch.allclose(out, ref, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # acting: the eager module, any batch size
        calls = []
        encoder.train_cnn = lambda x: calls.append(x)
        assert encoder({"image": images[0]}, bdims=1).shape == (3, encoder.out_dim)
        assert not calls


def test_bf16_update_is_close_to_fp32():
    _, fp32_losses, fp32_params = updated("run.precision=fp32")
    agent, bf16_losses, bf16_params = updated("run.precision=bf16")
    assert agent.precision == torch.bfloat16
    for key, value in fp32_losses[0].items():
        assert np.isfinite(bf16_losses[0][key])
        assert bf16_losses[0][key] == pytest.approx(value, rel=0.05, abs=0.05), key
    # bf16 rounding changes the update, but not by more than a small fraction of it
    assert not torch.equal(fp32_params, bf16_params)


def test_auto_settings_follow_the_device():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) == torch.bfloat16
    # auto: bf16 only where the CPU has native bf16 dot products
    assert resolve_precision("auto", cpu) == (torch.bfloat16 if cpu_has_bf16() else None)
    assert resolve_compile("off", cpu) is False and resolve_compile("on", cpu) is True
    assert resolve_compile("auto", torch.device("meta")) is False
    assert resolve_compile("auto", cpu) == (cxx_compiler() is not None)


@pytest.mark.slow
def test_each_module_marks_what_the_agent_compiles():
    agent = Agent(ObsSpec({}, {"image": (64, 64, 3)}), ACT, tiny_config("run.compile=on"), "cpu")
    assert sorted(agent.compiled) == [
        "Behavior.imagination_loss",
        "Behavior.imagine_step",
        "Behavior.replay_value_loss",
        "Encoder.train_cnn",
        "RSSM.observe_steps",
        "WorldModel.heads_loss",
    ]
    assert agent.compile() == agent.compiled  # a second call compiles nothing again
    assert not Agent(ObsSpec({"v": 3}, {}), ACT, tiny_config(), "cpu").compiled


def test_a_compile_failure_is_one_warning_and_the_eager_result():
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no compiler here")

    class Doubler(torch.nn.Module):
        compiled_methods = ("double",)

        def double(self, x):
            return 2 * x + 1

    module = Doubler()
    assert compile_marked(module, backend=broken_backend) == ["Doubler.double"]
    x = torch.arange(3.0)
    with pytest.warns(RuntimeWarning, match="torch.compile failed for Doubler.double"):
        assert torch.equal(module.double(x), 2 * x + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: later calls run eagerly without a warning
        assert torch.equal(module.double(x), 2 * x + 1)
    assert "no compiler here" in module.double.failure
    assert not torch._dynamo.config.suppress_errors  # no process-wide switch


def test_a_backward_compile_failure_reruns_the_update_eagerly():
    """The backward graphs compile at the first update's backward pass, outside the
    compiled methods' own fallback: a failure there must not end the run, and the update
    it reruns is the uncompiled agent's, bit for bit."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd
    from torch._inductor.exc import InductorError

    def no_backward(graph, example_inputs):
        raise InductorError(RuntimeError("conflicting declaration"), None)

    backend = aot_autograd(
        fw_compiler=lambda g, _: make_boxed_func(g.forward), bw_compiler=no_backward
    )
    cfg = tiny_config("run.compile=off")
    batch = random_batch(cfg, VEC, ACT)
    torch.manual_seed(0)
    eager = Agent(VEC, ACT, cfg, "cpu")
    torch.manual_seed(0)
    agent = Agent(VEC, ACT, cfg, "cpu")
    agent.compiled = compile_marked(agent, backend=backend)
    torch.manual_seed(1)  # the same samples in both updates
    with pytest.warns(RuntimeWarning, match="backward pass .*conflicting declaration"):
        metrics, _ = agent.update(batch)
    torch.manual_seed(1)
    expected, _ = eager.update(batch)
    assert float(metrics["loss/total"]) == float(expected["loss/total"])
    for p, q in zip(agent.state_dict().values(), eager.state_dict().values()):
        assert torch.equal(p, q)
    assert all(
        getattr(sub, name).failure
        for sub in agent.modules()
        for name in getattr(sub, "compiled_methods", ())
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: later updates run eagerly without a word
        agent.update(batch)


def test_a_real_error_in_a_compiled_method_is_not_hidden():
    class Broken(torch.nn.Module):
        compiled_methods = ("run",)

        def run(self, x):
            return x @ torch.ones(5, 2)  # shapes do not fit

    module = Broken()
    compile_marked(module, backend="eager")
    with pytest.raises(RuntimeError):
        module.run(torch.ones(3))


def test_options_set_before_the_first_call_join_the_methods_own():
    def double(x):
        return 2 * x

    method = CompiledMethod(double, "double")
    method.set_options({"max_autotune": False})
    assert method.options == {
        "fallback_random": True,
        "cpp.dynamic_threads": True,
        "max_autotune": False,
    }
    with pytest.raises(RuntimeError, match="not_an_inductor_option"):
        method.set_options({"not_an_inductor_option": True})  # handed to torch.compile
    with pytest.raises(ValueError, match="takes no options"):
        CompiledMethod(double, "double", backend="eager").set_options({"max_autotune": True})


@pytest.mark.slow
def test_a_learner_keeps_inductor_kernels_in_reverie_cache(tmp_path):
    """Inductor fixes its cache folder the first time anything imports torch._dynamo (the
    optimiser does): the learner must choose reverie's folder before that, and importing
    the trainer must not import torch._dynamo at all."""
    code = (
        "import os, sys\n"
        "import reverie.trainer\n"
        "assert 'torch._dynamo' not in sys.modules, 'importing the trainer imported dynamo'\n"
        "from reverie.agent import Agent\n"
        "from reverie.config import make_config\n"
        "from reverie.specs import ActSpec, ObsSpec\n"
        "cfg = make_config(['run.compile=off'])\n"
        "Agent(ObsSpec({'vector': 4}, {}), ActSpec(True, 2), cfg, 'cpu').opt\n"
        "print(os.environ['TORCHINDUCTOR_CACHE_DIR'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(tmp_path / "reverie" / "inductor")


@pytest.mark.skipif(cxx_compiler() is None, reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.slow
def test_kernels_compiled_at_one_thread_count_serve_another(tmp_path):
    """A run pinned to another core count than the one that filled the cache (make
    install's warm-up) finds its kernels there instead of compiling for minutes: the
    second process, at another thread count, hits Inductor's cache and gives the same
    numbers."""
    code = (
        "import sys, torch\n"
        "from torch._dynamo.utils import counters\n"
        "from reverie.accel import CompiledMethod\n"
        "torch.set_num_threads(int(sys.argv[1]))\n"
        "def f(x):\n"
        "    return (torch.tanh(x @ x.T) * 3).sum(-1).softmax(-1)\n"
        "out = CompiledMethod(f, 'f')(torch.linspace(-1, 1, 4096).reshape(64, 64))\n"
        "print(counters['inductor']['fxgraph_cache_hit'], repr(out.sum().item()))\n"
    )
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "cache"))
    runs = []
    for threads in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code, threads],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(out.stdout.split())
    assert runs[0][0] == "0", "the first process found a cache it should not have"
    assert runs[1][0] == "1", "the second thread count compiled again instead of a cache hit"
    assert float(runs[0][1]) == pytest.approx(float(runs[1][1]), rel=1e-6)
