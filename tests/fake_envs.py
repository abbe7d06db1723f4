"""Small Gymnasium envs for tests: registered on import (used as `gym:fake_envs:...`)."""

from __future__ import annotations

import os
import time

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class DictObsEnv(gym.Env):
    """Dict observation mixing a uint8 image, a vector and a Discrete; Box actions in [0, 4]."""

    def __init__(self, length: int = 6, terminate: bool = True):
        self.observation_space = spaces.Dict(
            {
                "camera": spaces.Box(0, 255, (32, 48, 3), np.uint8),
                "joints": spaces.Box(-np.inf, np.inf, (2, 2), np.float64),
                "mode": spaces.Discrete(3),
            }
        )
        self.action_space = spaces.Box(0.0, 4.0, (2,), np.float32)
        self.length, self.terminate, self.t = length, terminate, 0
        self.last_action = None

    def _obs(self):
        return {
            "camera": np.full((32, 48, 3), self.t * 10, np.uint8),
            "joints": np.full((2, 2), self.t, np.float64),
            "mode": self.t % 3,
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.last_action = np.asarray(action)
        self.t += 1
        done = self.t >= self.length
        return self._obs(), 1.0, done and self.terminate, done and not self.terminate, {}


class ImageEnv(gym.Env):
    """Grayscale 84x84 frames, Discrete(3) actions, ends by truncation after 20 steps."""

    observation_space = spaces.Box(0, 255, (84, 84), np.uint8)
    action_space = spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.integers(0, 255, (84, 84), dtype=np.uint8), {}

    def step(self, action):
        self.t += 1
        obs = self.np_random.integers(0, 255, (84, 84), dtype=np.uint8)
        return obs, float(action == 1), False, self.t >= 20, {}


class FaultyEnv(gym.Env):
    """Vector observations [t, t, t, t] (t: step in the episode), Discrete(2) actions.

    On its `fault_step`-th step since construction it calls `fault()`. With `marker` (a file
    path) only the first instance to create that file faults: exactly one fault in a run.
    """

    observation_space = spaces.Box(-np.inf, np.inf, (4,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, fault_step: int = 5, marker: str = "", length: int = 50):
        self.fault_step, self.marker, self.length = fault_step, marker, length
        self.t = self.calls = 0

    def _obs(self):
        return np.full(4, self.t, np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.calls += 1
        obs, reward = self._obs(), 1.0
        if self.calls == self.fault_step and self._claim():
            obs, reward = self.fault(obs)
        return obs, reward, False, self.t >= self.length, {}

    def _claim(self) -> bool:
        if not self.marker:
            return True
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            return True
        except FileExistsError:
            return False

    def fault(self, obs):
        raise NotImplementedError


class RaiseEnv(FaultyEnv):
    def fault(self, obs):
        raise RuntimeError(f"deliberate fault at step {self.calls}")


class HangEnv(FaultyEnv):
    def fault(self, obs):
        time.sleep(600)


class ExitEnv(FaultyEnv):
    def fault(self, obs):
        os._exit(3)


class NaNEnv(FaultyEnv):
    def fault(self, obs):
        return np.full(4, np.nan, np.float32), float("inf")


class TextEnv(gym.Env):
    observation_space = spaces.Text(8)
    action_space = spaces.Discrete(2)


class SlowStep(gym.Wrapper):
    """CartPole whose every step takes `delay` seconds more: a slow simulator."""

    def __init__(self, delay: float = 0.2):
        super().__init__(gym.make("CartPole-v1"))
        self.delay = delay

    def step(self, action):
        time.sleep(self.delay)
        return self.env.step(action)


class PickEnv(gym.Env):
    """Composite actions: reward 1 for each part of the action that matches a target.

    kind "multi": MultiDiscrete([3, 2], start [1, 0]); kind "dict": {"move": Discrete(3),
    "force": Box(-2, 2, (2,))}, the force counting when its first value is above 1.
    Every action it received is kept in `actions`, checked against its action space.
    """

    def __init__(self, kind: str = "multi", length: int = 8):
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        if kind == "multi":
            self.action_space = spaces.MultiDiscrete([3, 2], start=[1, 0])
        else:
            move = spaces.Discrete(3)
            self.action_space = spaces.Dict({"move": move, "force": spaces.Box(-2, 2, (2,))})
        self.kind, self.length, self.t, self.actions = kind, length, 0, []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        assert self.action_space.contains(action), (action, self.action_space)
        self.actions.append(action)
        self.t += 1
        if self.kind == "multi":
            reward = float(action[0] == 3) + float(action[1] == 1)
        else:
            reward = float(action["move"] == 2) + float(action["force"][0] > 1)
        obs = np.full(2, self.t / self.length, np.float32)
        return obs, reward, False, self.t >= self.length, {}


class LyingEnv(gym.Env):
    """An env that breaks its contract from step `at` on, in the way `kind` names:
    shape (a vector of 5, not 3), dtype (a string observation), reward_nan, reward_huge
    (1e30), action_space (grows from 2 to 3 actions), old_reset (reset returns the
    observation alone), old_step (step returns 4 values)."""

    def __init__(self, kind: str = "shape", at: int = 3, length: int = 12):
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.kind, self.at, self.length, self.t = kind, at, length, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        obs = np.zeros(3, np.float32)
        return obs if self.kind == "old_reset" else (obs, {})

    def step(self, action):
        self.t += 1
        obs, reward, lie = np.zeros(3, np.float32), 0.0, self.t >= self.at
        if lie and self.kind == "shape":
            obs = np.zeros(5, np.float32)
        elif lie and self.kind == "dtype":
            obs = np.array(["a", "b", "c"])
        elif lie and self.kind == "reward_nan":
            reward = float("nan")
        elif lie and self.kind == "reward_huge":
            reward = 1e30
        elif lie and self.kind == "action_space":
            self.action_space = spaces.Discrete(3)
        elif lie and self.kind == "old_step":
            return obs, reward, False, {}
        return obs, reward, False, self.t >= self.length, {}


gym.register("fake_envs/Lying-v0", entry_point=LyingEnv, disable_env_checker=True)
gym.register("fake_envs/MultiDiscrete-v0", entry_point=PickEnv, kwargs={"kind": "multi"})
gym.register("fake_envs/DictAction-v0", entry_point=PickEnv, kwargs={"kind": "dict"})
gym.register("fake_envs/DictObs-v0", entry_point=DictObsEnv)
gym.register("fake_envs/Image-v0", entry_point=ImageEnv)
gym.register("fake_envs/Text-v0", entry_point=TextEnv)
gym.register("fake_envs/Raise-v0", entry_point=RaiseEnv)
gym.register("fake_envs/Hang-v0", entry_point=HangEnv)
gym.register("fake_envs/Exit-v0", entry_point=ExitEnv)
gym.register("fake_envs/NaN-v0", entry_point=NaNEnv)
gym.register("fake_envs/SlowCartPole-v0", entry_point=SlowStep)


class WrongDtypeEnv(gym.Env):
    """Declares a float32 Box observation and returns float64 arrays (`check-env` warns)."""

    observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.uniform(-1, 1, 3), {}  # float64

    def step(self, action):
        self.t += 1
        return self.np_random.uniform(-1, 1, 3), 0.0, False, self.t >= 30, {}


class TimeLimitAsTerminationEnv(gym.Env):
    """Ends every episode at its `max_episode_steps` with terminated=True: a time limit
    reported as termination (`check-env` warns)."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    max_episode_steps = 25

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(2, self.t / self.max_episode_steps, np.float32)
        return obs, 1.0, self.t >= self.max_episode_steps, False, {}
