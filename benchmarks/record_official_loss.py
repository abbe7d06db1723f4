"""Record the official DreamerV3 code's whole training loss for tests/test_official_loss.py.

Builds the official agent (danijar/dreamerv3, the December-2024 revision) at the tiny size
reverie's tests use (tests/tiny.py), in float32 on the CPU, for a 4-float vector
observation and two action spaces (2 discrete actions; 2 continuous actions).
It perturbs the initial parameters so that no head starts at an exact zero (the 2024 code
zero-initialises the reward and critic outputs, which would leave their layers without
gradients), draws a fixed batch, runs `Agent.loss` once under `nj.grad` over the modules
the optimiser trains (no optimiser step), and writes `tests/fixtures/official_loss.json`:

- "source": the official commit and the JAX version;
- "cases": per action space, the config used, the parameters (official name -> shape and
  flat values, row-major, the official layout), the batch, the return normaliser's state
  before and after the loss, the random draws the loss made (every categorical sample as
  class indices and every normal sample as its unit noise, in the order drawn: see
  `record_draws`), every loss term (mean and per element), the total loss, and the
  gradient norms per module (dyn, enc, dec, rew, con, pol, val), in all and per parameter.

The official code itself stays outside this repository. To record:

    git clone https://github.com/danijar/dreamerv3 ~/official-src
    git -C ~/official-src checkout f8817c4040cebada9bb9712554b0234c70c291d5
    python3.11 -m venv ~/official-venv
    ~/official-venv/bin/pip install "jax[cpu]==0.4.33" "numpy<2" chex einops optax \\
        jaxtyping "elements>=3.17.0" "ninjax>=3.5.1" "portal>=3.5.0" "granular>=0.20.3" \\
        "scope>=0.4.4" ruamel.yaml
    JAX_PLATFORMS=cpu ~/official-venv/bin/python benchmarks/record_official_loss.py \\
        --official ~/official-src

Recorded with jax 0.4.33, elements 3.22.4, ninjax 3.6.3, numpy 1.26.4. The loss runs
eagerly (see `record_case`), so each case is slow to record. The later commits of the
official repository (to May 2026) leave dreamerv3/agent.py, dreamerv3/rssm.py and
embodied/jax unchanged.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "official_loss.json"
COMMIT = "f8817c4040cebada9bb9712554b0234c70c291d5"  # danijar/dreamerv3, 2024-12-07

# the sizes of reverie's tiny test model (TINY_MODEL, tests/tiny.py)
B, T, H = 4, 8, 4
SIZES = {
    "agent.dyn.rssm": dict(deter=32, hidden=16, stoch=4, classes=4, blocks=4),
    "agent.enc.simple.units": 16,
    "agent.dec.simple.units": 16,
    "agent.rewhead.units": 16,
    "agent.conhead.units": 16,
    "agent.policy.units": 16,
    "agent.value.units": 16,
    "agent.imag_length": H,
    "batch_size": B,
    "batch_length": T,
    "replay_context": 0,
    "jax.platform": "cpu",
    "jax.compute_dtype": "float32",
    "jax.prealloc": False,
}
OBS = 4  # vector observation width
ACTIONS = 2
# the return normaliser's state before the loss (both sides start from it): the 5th and
# 95th percentile EMAs. Not the fresh zeros: with those the scale is its limit 1.0 and the
# percentiles of this batch would not show in the actor loss
RETNORM = {"lo": -2.0, "hi": 3.0}
MODULES = ("dyn", "enc", "dec", "rew", "con", "pol", "val")  # what the optimiser trains
TRAINED = tuple(f"{m}/" for m in MODULES)


def floats(x) -> list:
    """Flat float32 values, each written in its shortest round-trip form."""
    return [float(str(v)) for v in np.asarray(x, np.float32).ravel()]


def make_config(official: pathlib.Path):
    import elements
    import ruamel.yaml as yaml

    configs = yaml.YAML(typ="safe").load((official / "dreamerv3/configs.yaml").read_text())
    config = elements.Config(configs["defaults"]).update(SIZES)
    config = config.update(logdir="/tmp/record_official_loss")
    agent_config = elements.Config(
        **config.agent,
        logdir=config.logdir,
        seed=0,
        jax=elements.Config({**config.jax, "precompile": False}),
        batch_size=B,
        batch_length=T,
        replay_context=0,
        report_length=T,
        replica=0,
        replicas=1,
    )
    return agent_config


def perturb(params: dict, rng: np.random.Generator) -> dict:
    """Every trained parameter moved off its initial value (see the module docstring).

    Twohot heads (reward, critic, slow critic): small kernels and a bias that peaks the
    logits around the middle bins (predictions of order 1, not of the outer bins' 1e8);
    other biases and the norm scales get noise; other kernels keep the official init.
    The slow critic differs from the critic, so the slow regulariser has something to do.
    """
    out = {}
    for name, value in params.items():
        value = np.asarray(value)
        if not name.startswith(TRAINED + ("slowval/",)) or value.dtype != np.float32:
            out[name] = value
            continue
        if name.endswith("head/logits/kernel") and value.shape[-1] == 255:
            new = 0.05 * rng.normal(size=value.shape)
        elif name.endswith("head/logits/bias") and value.shape[-1] == 255:
            centre = 127 + rng.uniform(-3, 3)
            new = -0.5 * ((np.arange(255) - centre) / 6.0) ** 2 + 0.3 * rng.normal(size=255)
        elif name.startswith(("dyn/obslogit/", "dyn/priorlogit/")):
            # sharper latents: most KL terms above the free nats, so they have gradients
            new = 1.5 * value if name.endswith("kernel") else 0.5 * rng.normal(size=value.shape)
        elif name.endswith("/bias"):
            new = value + 0.1 * rng.normal(size=value.shape)
        elif name.endswith("/scale"):
            new = value + 0.1 * rng.normal(size=value.shape)
        else:
            new = value
        out[name] = np.asarray(new, np.float32)
    return out


def make_batch(rng: np.random.Generator, discrete: bool) -> dict:
    """(B, T) sequences: every row starts an episode; row 1 terminates at step 3 and a
    new episode starts at 4; row 2 is cut off (is_last, not terminal) at 5, new at 6."""
    batch = {
        "vector": (2.0 * rng.normal(size=(B, T, OBS))).astype(np.float32),
        "reward": np.where(rng.random((B, T)) < 0.5, 0.0, rng.normal(size=(B, T)) * 3.0),
        "is_first": np.zeros((B, T), bool),
        "is_last": np.zeros((B, T), bool),
        "is_terminal": np.zeros((B, T), bool),
    }
    batch["reward"] = batch["reward"].astype(np.float32)
    batch["is_first"][:, 0] = True
    batch["is_last"][1, 3] = batch["is_terminal"][1, 3] = batch["is_first"][1, 4] = True
    batch["is_last"][2, 5] = batch["is_first"][2, 6] = True
    if discrete:
        batch["action"] = rng.integers(0, ACTIONS, (B, T)).astype(np.int32)
    else:
        batch["action"] = rng.uniform(-1, 1, (B, T, ACTIONS)).astype(np.float32)
    return batch


def record_draws(draws: list):
    """Patch the official output distributions so that every sample also reports itself,
    in the order drawn: categorical samples as class indices, normal samples as the unit
    noise that scales by the standard deviation. Only the loss's own pass reports (not
    ninjax's pre-run pass of `nj.grad`, which draws with another seed and is discarded)."""
    import jax
    import ninjax as nj
    from embodied.jax import outs

    def report(kind):
        def fn(value):
            draws.append({"kind": kind, "shape": list(value.shape), "values": value})

        return fn

    def categorical_sample(self, seed, shape=()):
        index = jax.random.categorical(seed, self.logits, -1, shape + self.logits.shape[:-1])
        if not nj.context().ignore:
            jax.debug.callback(report("categorical"), index, ordered=True)
        return index

    def normal_sample(self, seed, shape=()):
        noise = jax.random.normal(seed, shape + self.mean.shape, np.float32)
        if not nj.context().ignore:
            jax.debug.callback(report("normal"), noise, ordered=True)
        return noise * self.stddev + self.mean

    outs.Categorical.sample = categorical_sample
    outs.Normal.sample = normal_sample


def record_case(official: pathlib.Path, discrete: bool, seed: int) -> dict:
    import elements
    import jax
    import jax.numpy as jnp
    import ninjax as nj
    import optax
    from dreamerv3.agent import Agent

    agent_config = make_config(official)
    obs_space = {
        "vector": elements.Space(np.float32, (OBS,)),
        "reward": elements.Space(np.float32),
        "is_first": elements.Space(bool),
        "is_last": elements.Space(bool),
        "is_terminal": elements.Space(bool),
    }
    if discrete:
        act_space = {"action": elements.Space(np.int32, (), 0, ACTIONS)}
    else:
        act_space = {"action": elements.Space(np.float32, (ACTIONS,), -1.0, 1.0)}
    agent = Agent(obs_space, act_space, agent_config)
    # the official setup disallows implicit transfers; this script moves data by hand
    jax.config.update("jax_transfer_guard", "allow")
    model = agent.model
    rng = np.random.default_rng(seed)
    params = perturb(jax.device_get(agent.params), rng)
    params["retnorm/lo/value"] = np.float32(RETNORM["lo"])
    params["retnorm/hi/value"] = np.float32(RETNORM["hi"])
    batch = make_batch(rng, discrete)
    data = {**batch, "stepid": np.zeros((B, T, 20), np.uint8), "consec": np.zeros((B, T), np.int32)}

    def loss_and_grads(data):
        carry = model.init_train(B)
        carry, obs, prevact, _ = model._apply_replay_context(carry, data)
        loss, _, grads, aux = nj.grad(model.loss, model.modules, has_aux=True)(
            carry, obs, prevact, training=True
        )
        return loss, grads, aux[2]["losses"], aux[3]

    draws: list = []
    record_draws(draws)
    state = {k: jnp.asarray(v) for k, v in params.items()}
    seed = jnp.array([1, 2], jnp.uint32)
    # eagerly: JAX 0.4.33 drops debug callbacks inside a scan under jit+grad (the
    # posterior and imagination steps are scans), not when the scan runs as a loop
    with jax.disable_jit():
        new_state, (loss, grads, losses, metrics) = nj.pure(loss_and_grads)(state, data, seed=seed)
    jax.effects_barrier()
    loss, grads, losses, metrics, new_state = jax.device_get(
        (loss, grads, losses, metrics, new_state)
    )

    trained = {k for k in params if k.startswith(TRAINED)}
    assert set(grads) == trained, sorted(set(grads) ^ trained)
    gradnorm = {
        m: float(optax.global_norm({k: v for k, v in grads.items() if k.startswith(m + "/")}))
        for m in MODULES
    }
    gradnorm["total"] = float(optax.global_norm(grads))
    return {
        "discrete": discrete,
        "config": {
            "sizes": {k: v for k, v in SIZES.items() if not k.startswith("jax.")},
            "compute_dtype": "float32",
            "agent": {
                k: agent_config[k]
                for k in (
                    "loss_scales",
                    "imag_loss",
                    "repl_loss",
                    "retnorm",
                    "horizon",
                    "contdisc",
                    "reward_grad",
                    "repval_loss",
                    "repval_grad",
                    "ac_grads",
                    "policy_dist_disc",
                    "policy_dist_cont",
                )
            },
            "rssm": dict(agent_config.dyn.rssm),
            "policy": dict(agent_config.policy),
            "value": dict(agent_config.value),
        },
        "params": {
            k: {"shape": list(np.shape(v)), "values": floats(v)}
            for k, v in params.items()
            if k.startswith(TRAINED + ("slowval/",))
        },
        "retnorm_before": RETNORM,
        "retnorm_after": {
            "lo": float(new_state["retnorm/lo/value"]),
            "hi": float(new_state["retnorm/hi/value"]),
        },
        "batch": {
            k: {"shape": list(v.shape), "dtype": str(v.dtype), "values": np.ravel(v).tolist()}
            for k, v in batch.items()
        },
        "draws": [
            {
                "kind": d["kind"],
                "shape": d["shape"],
                "values": np.ravel(d["values"]).tolist()
                if d["kind"] == "categorical"
                else floats(d["values"]),
            }
            for d in draws
        ],
        "losses": {k: float(np.mean(v)) for k, v in losses.items()},
        "loss_elements": {
            k: {"shape": list(v.shape), "values": floats(v)} for k, v in losses.items()
        },
        "total_loss": float(loss),
        "gradnorm": gradnorm,
        "param_gradnorm": {k: float(np.linalg.norm(np.ravel(v))) for k, v in grads.items()},
        "metrics": {
            k: float(v)
            for k, v in metrics.items()
            if np.ndim(v) == 0 and k in ("adv", "ret", "val", "weight", "rew", "con")
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=pathlib.Path, required=True, help="official checkout")
    parser.add_argument(
        "--commit",
        default=COMMIT,
        help="the checkout's commit, recorded in the fixture where it is not a git checkout "
        "(e.g. a `git archive` of it); a git checkout must be at this commit",
    )
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    head = subprocess.run(
        ["git", "-C", str(args.official), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode == 0 and head.stdout.strip() != args.commit:
        sys.exit(f"{args.official} is at {head.stdout.strip()}, not {args.commit}")
    sys.path.insert(0, str(args.official))
    import jax

    jax.config.update("jax_platforms", "cpu")
    fixture = {
        "source": {
            "repo": "danijar/dreamerv3",
            "commit": args.commit,
            "jax": jax.__version__,
            "script": "benchmarks/record_official_loss.py",
        },
        "cases": {
            "discrete": record_case(args.official, True, seed=0),
            "continuous": record_case(args.official, False, seed=1),
        },
    }
    args.out.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    for name, case in fixture["cases"].items():
        print(name, json.dumps(case["losses"]), json.dumps(case["gradnorm"]))


if __name__ == "__main__":
    main()
