"""`reverie check-env`: broken envs get their finding and its fix, a good one only ok lines."""

from __future__ import annotations

import pytest

from reverie.cli import main
from reverie.envs.check_env import Finding, check_env, resolve_target

from . import fake_envs


def levels(findings: list[Finding], check: str) -> list[str]:
    return [f.level for f in findings if f.check == check]


def test_a_float64_observation_in_a_float32_box_is_named_with_its_dtypes():
    findings = check_env("custom:WrongDtypeEnv", fake_envs.WrongDtypeEnv, steps=40)
    (found,) = [f for f in findings if f.check == "observations"]
    assert found.level == "warning"
    assert "float64" in found.message and "float32" in found.message
    assert "dtype=np.float32" in found.fix
    assert not [f for f in findings if f.level == "error"]


def test_a_time_limit_reported_as_termination_warns_about_bootstrapping(capsys):
    status = main(["check-env", "tests.fake_envs:TimeLimitAsTerminationEnv", "--steps", "60"])
    out = capsys.readouterr().out
    assert status == 0  # a warning, not an error
    (line,) = [x for x in out.splitlines() if x.startswith("warning episode-ends")]
    assert "terminated=True at exactly the time limit (25 steps)" in line
    assert "bootstrapped" in line and "Fix: return terminated=False, truncated=True" in line
    assert out.splitlines()[-1].endswith("0 errors; ready to train")


def test_nan_observations_are_an_error_with_the_async_fix(capsys):
    status = main(["check-env", "gym:fake_envs/NaN-v0", "--steps", "20"])
    out = capsys.readouterr().out
    assert status == 1
    (line,) = [x for x in out.splitlines() if x.startswith("error")]
    assert line.startswith("error   finite: NaN or inf in vector (first at step 5), reward")
    assert "env.parallel=async" in line
    assert "1 errors; fix the errors before training" in out.splitlines()[-1]


def test_cartpole_passes_with_ok_lines_only():
    findings = check_env("gym:CartPole-v1", steps=100, seed=3)
    assert {f.level for f in findings} == {"ok"}
    checks = {f.check for f in findings}
    assert {"spaces", "api", "observations", "finite", "episode-ends", "seeding"} <= checks


@pytest.mark.parametrize(
    ("kind", "check"), [("shape", "observations"), ("old_step", "api"), ("old_reset", "api")]
)
def test_a_contract_break_is_one_error_of_its_check(kind, check):
    findings = check_env("custom:LyingEnv", lambda: fake_envs.LyingEnv(kind), steps=10)
    assert [(f.level, f.check) for f in findings if f.level != "ok"] == [("error", check)]


def test_unsupported_spaces_and_unstable_seeding_are_found():
    (found,) = check_env("custom:TextEnv", fake_envs.TextEnv)
    assert (found.level, found.check) == ("error", "spaces") and "Text" in found.message

    class Unseeded(fake_envs.WrongDtypeEnv):
        def reset(self, *, seed=None, options=None):
            obs, info = super().reset(seed=None)
            return obs.astype("float32"), info

        def step(self, action):
            obs, *rest = super().step(action)
            return (obs.astype("float32"), *rest)

    findings = check_env("custom:Unseeded", Unseeded, steps=5)
    assert levels(findings, "seeding") == ["warning"]


def test_render_is_checked_for_pixels():
    findings = check_env("custom:WrongDtypeEnv", fake_envs.WrongDtypeEnv, steps=5, pixels=True)
    (found,) = [f for f in findings if f.check == "render"]
    assert found.level == "error" and "render_mode='rgb_array'" in found.fix


def test_targets_resolve_to_ids_or_factories(tmp_path, monkeypatch):
    assert resolve_target("gym:CartPole-v1") == ("gym:CartPole-v1", None)
    assert resolve_target("dmc:walker_walk") == ("dmc:walker_walk", None)
    assert resolve_target("tests.fake_envs:WrongDtypeEnv") == (
        "custom:WrongDtypeEnv",
        fake_envs.WrongDtypeEnv,
    )
    (tmp_path / "my_env.py").write_text("def make():\n    return None\n")
    env_id, factory = resolve_target(f"{tmp_path / 'my_env.py'}:make")
    assert env_id == "custom:make" and callable(factory)
    assert main(["check-env", f"{tmp_path / 'my_env.py'}:make"]) == 1  # not an env
