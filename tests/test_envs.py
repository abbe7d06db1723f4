import numpy as np
import pytest
from omegaconf import OmegaConf

from reverie.config import make_config
from reverie.envs import (
    EnvIdError,
    UnsupportedSpaceError,
    describe_spaces,
    make_env,
    make_vector_env,
    suite_installed,
)


def test_cartpole_vector_observation_and_discrete_actions():
    env = make_env("gym:CartPole-v1", seed=0)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"vector"} and obs["vector"].dtype == np.float32
    assert obs["vector"].shape == (4,)
    spec, act = describe_spaces(env)
    assert spec.vectors == {"vector": 4} and act.discrete and act.dim == 2


def test_bare_gymnasium_id_is_accepted():
    env = make_env("CartPole-v1")
    assert env.observation_space["vector"].shape == (4,)


def test_module_prefix_form_imports_module_and_flattens_dict():
    env = make_env("gym:fake_envs:fake_envs/DictObs-v0")
    obs, _ = env.reset(seed=0)
    assert obs["camera"].shape == (64, 64, 3) and obs["camera"].dtype == np.uint8
    assert obs["joints"].shape == (4,) and obs["joints"].dtype == np.float32
    np.testing.assert_array_equal(obs["mode"], [1, 0, 0])  # Discrete -> one-hot
    spec, act = describe_spaces(env)
    assert spec.images == {"camera": (64, 64, 3)} and set(spec.vectors) == {"joints", "mode"}
    assert not act.discrete and act.dim == 2


def test_box_actions_normalised_and_clipped():
    env = make_env("gym:fake_envs:fake_envs/DictObs-v0")
    env.reset(seed=0)
    env.step(np.array([-1.0, 1.0]))
    np.testing.assert_allclose(env.unwrapped.last_action, [0.0, 4.0])
    env.step(np.array([0.0, 7.0]))  # outside [-1, 1]: clipped
    np.testing.assert_allclose(env.unwrapped.last_action, [2.0, 4.0])


def test_grayscale_images_resized_to_64():
    env = make_env("gym:fake_envs:fake_envs/Image-v0", image_size=64)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (64, 64, 1) and obs["image"].dtype == np.uint8


def test_rendered_pixels_option():
    env = make_env("gym:CartPole-v1", pixels=True)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].std() > 0


def test_terminated_and_truncated_kept_apart():
    env = make_env("gym:fake_envs:fake_envs/DictObs-v0", kwargs={"length": 2})
    env.reset(seed=0)
    env.step(np.zeros(2))
    _, _, term, trunc, _ = env.step(np.zeros(2))
    assert term and not trunc
    env = make_env("gym:fake_envs:fake_envs/DictObs-v0", kwargs={"length": 2, "terminate": False})
    env.reset(seed=0)
    env.step(np.zeros(2))
    _, _, term, trunc, _ = env.step(np.zeros(2))
    assert trunc and not term


@pytest.mark.parametrize("parallel", ["sync", pytest.param("async", marks=pytest.mark.slow)])
def test_vector_envs(parallel, importable_fake_envs):
    cfg = make_config(
        [
            "env.num_envs=2",
            f"env.parallel={parallel}",
            "env.id=gym:fake_envs:fake_envs/DictObs-v0",
            "env.kwargs.length=3",
        ]
    )
    venv = make_vector_env(cfg.env, seed=0)
    try:
        obs, _ = venv.reset(seed=0)
        assert obs["camera"].shape == (2, 64, 64, 3)
        dones = []
        for _ in range(4):
            obs, rew, term, trunc, _ = venv.step(np.zeros((2, 2), np.float32))
            dones.append(term.copy())
        # ends after 3 steps; the 4th step is the reset step (NEXT_STEP autoreset)
        assert dones[2].all() and not dones[3].any()
        assert obs["joints"][0, 0] == 0.0
    finally:
        venv.close()


def test_unknown_env_id_is_a_clean_error():
    with pytest.raises(EnvIdError, match="CartPole-v1"):
        make_env("gym:CartPol-v1")
    with pytest.raises(EnvIdError, match="no_such_module"):
        make_env("gym:no_such_module:Foo-v0")


def test_unsupported_observation_space():
    with pytest.raises(UnsupportedSpaceError, match="Text"):
        make_env("gym:fake_envs:fake_envs/Text-v0")


def test_env_kwargs_from_config():
    cfg = make_config(["env.kwargs.length=2"])
    assert OmegaConf.to_container(cfg.env.kwargs) == {"length": 2}


@pytest.mark.skipif(not suite_installed("dmc"), reason="dmc not installed")
@pytest.mark.slow
def test_dmc_fast_render_changes_pixels_not_physics():
    # benchmarks/dmc_render_check.py: on cartpole_swingup the fast path (no multisampling,
    # shadows, reflections) changes a frame less than shifting it by one pixel (1.4 vs 2.6
    # levels); a wiring fault (another state, camera, size or channel order) changes it
    # by tens of levels, so the bound is that yardstick, computed on these frames
    envs = [
        make_env("dmc:cartpole_swingup", pixels=True, seed=0, kwargs={"fast_render": fast})
        for fast in (True, False)
    ]
    rng = np.random.default_rng(0)
    frames = [[env.reset(seed=0)[0]["image"]] for env in envs]
    for _ in range(30):
        action = rng.uniform(-1, 1, envs[0].action_space.shape).astype(np.float32)
        for env, seen in zip(envs, frames, strict=True):
            seen.append(env.step(action)[0]["image"])
        states = [env.unwrapped.env.physics.get_state() for env in envs]
        np.testing.assert_array_equal(states[0], states[1])
    fast, default = (np.stack(f).astype(np.int16) for f in frames)
    mad = np.abs(fast - default).mean()
    shift = np.abs(default[:, :, 1:] - default[:, :, :-1]).mean()
    assert 0 < mad < shift, (mad, shift)
    for env in envs:
        env.close()
