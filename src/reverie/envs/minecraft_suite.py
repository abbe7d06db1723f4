"""Minecraft Diamond through MineRL, written `minecraft:diamond`.

MineRL (0.4.x, Java 8 and a Minecraft build) cannot be installed on every machine;
`pip install -e .[minecraft]` tries, and docs/domains.md has the notes. This adapter is
written against MineRL's documented API: `gym.make("MineRLObtainDiamond-v0")` (old gym:
`reset() -> obs`, `step(action) -> obs, reward, done, info`), observations
`{'pov': 64x64x3 uint8, 'inventory': {item: count}, 'equipped_items': {'mainhand':
{'type': ...}}}` and dict actions (`forward`, `attack`, `camera`, `craft`, `nearbyCraft`,
`nearbySmelt`, `place`, `equip`, ...).

As in the DreamerV3 paper, the env's reward is replaced by 12 milestone rewards of +1,
each paid once per episode, for log, plank, stick, crafting table, wooden pickaxe,
cobblestone, stone pickaxe, iron ore, furnace, iron ingot, iron pickaxe and diamond.
The agent sees the frame, the inventory counts, the most of each item held this episode
and the equipped item (one-hot), and picks one of the discrete actions of `ACTIONS`.
As in the authors' code, the reward also has a health term, 0.01 times the change in
health (life / 20), where the env reports life (`life_stats`; a mission with
MineRL's life-stats observation). The authors' mission also mines 100 times faster
(break speed 100); ObtainDiamond-v0 has no such setting (docs/domains.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from reverie.envs._util import require, unknown_task

# (milestone, inventory item that shows it)
MILESTONES = (
    ("log", "log"),
    ("plank", "planks"),
    ("stick", "stick"),
    ("crafting_table", "crafting_table"),
    ("wooden_pickaxe", "wooden_pickaxe"),
    ("cobblestone", "cobblestone"),
    ("stone_pickaxe", "stone_pickaxe"),
    ("iron_ore", "iron_ore"),
    ("furnace", "furnace"),
    ("iron_ingot", "iron_ingot"),
    ("iron_pickaxe", "iron_pickaxe"),
    ("diamond", "diamond"),
)
ITEMS = (
    "coal",
    "cobblestone",
    "crafting_table",
    "diamond",
    "dirt",
    "furnace",
    "iron_axe",
    "iron_ingot",
    "iron_ore",
    "iron_pickaxe",
    "log",
    "planks",
    "stick",
    "stone",
    "stone_axe",
    "stone_pickaxe",
    "torch",
    "wooden_axe",
    "wooden_pickaxe",
)
EQUIP = (
    "none",
    "air",
    "wooden_axe",
    "wooden_pickaxe",
    "stone_axe",
    "stone_pickaxe",
    "iron_axe",
    "iron_pickaxe",
    "other",
)
# discrete action -> changes to MineRL's no-op action
ACTIONS: tuple[dict[str, Any], ...] = (
    {},  # noop
    {"attack": 1},
    {"forward": 1},
    {"back": 1},
    {"left": 1},
    {"right": 1},
    {"jump": 1, "forward": 1},
    {"camera": (-15.0, 0.0)},  # look up
    {"camera": (15.0, 0.0)},  # look down
    {"camera": (0.0, -15.0)},  # turn left
    {"camera": (0.0, 15.0)},  # turn right
    {"place": "dirt"},
    {"place": "stone"},
    {"place": "cobblestone"},
    {"place": "crafting_table"},
    {"place": "furnace"},
    {"craft": "planks"},
    {"craft": "stick"},
    {"craft": "crafting_table"},
    {"nearbyCraft": "wooden_pickaxe"},
    {"nearbyCraft": "stone_pickaxe"},
    {"nearbyCraft": "iron_pickaxe"},
    {"nearbyCraft": "furnace"},
    {"nearbySmelt": "iron_ingot"},
    {"equip": "wooden_pickaxe"},
    {"equip": "stone_pickaxe"},
    {"equip": "iron_pickaxe"},
)
NOOP: dict[str, Any] = {
    "attack": 0,
    "back": 0,
    "forward": 0,
    "jump": 0,
    "left": 0,
    "right": 0,
    "sneak": 0,
    "sprint": 0,
    "camera": (0.0, 0.0),
    "craft": "none",
    "equip": "none",
    "nearbyCraft": "none",
    "nearbySmelt": "none",
    "place": "none",
}


def milestone_reward(inventory: dict[str, Any], reached: set[str]) -> tuple[float, list[str]]:
    """+1 for each milestone first reached now; `reached` (this episode's) is updated."""
    new = []
    for name, item in MILESTONES:
        if name not in reached and float(inventory.get(item, 0)) > 0:
            reached.add(name)
            new.append(name)
    return float(len(new)), new


HEALTH_SCALE = 0.01  # reward per unit of health (life / 20), the authors' health term


def health(raw: dict[str, Any]) -> float | None:
    """Health in [0, 1] (life / 20) where the env reports life stats, else None."""
    life = raw.get("life_stats", {}).get("life")
    return None if life is None else float(life) / 20.0


def minerl_action(index: int) -> dict[str, Any]:
    action = dict(NOOP)
    action.update(ACTIONS[int(index)])
    action["camera"] = np.asarray(action["camera"], np.float32)
    return action


class MinecraftDiamond(gym.Env):
    """`inner` is a MineRL env (old gym API); tests pass a stand-in."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, inner: Any, size: int = 64):
        self.inner = inner
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (size, size, 3), np.uint8),
                "inventory": spaces.Box(0, np.inf, (len(ITEMS),), np.float32),
                "inventory_max": spaces.Box(0, np.inf, (len(ITEMS),), np.float32),
                "equipped": spaces.Box(0, 1, (len(EQUIP),), np.float32),
            }
        )
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.render_mode = "rgb_array"
        self.reached: set[str] = set()
        self.max_inventory = np.zeros(len(ITEMS), np.float32)
        self._pov: np.ndarray | None = None
        self.health: float | None = None

    def _obs(self, raw: dict[str, Any]) -> dict[str, np.ndarray]:
        inventory = raw.get("inventory", {})
        counts = np.array([float(inventory.get(k, 0)) for k in ITEMS], np.float32)
        self.max_inventory = np.maximum(self.max_inventory, counts)
        mainhand = raw.get("equipped_items", {}).get("mainhand", {}).get("type", "none")
        equipped = np.zeros(len(EQUIP), np.float32)
        equipped[EQUIP.index(mainhand) if mainhand in EQUIP else EQUIP.index("other")] = 1.0
        self._pov = np.asarray(raw["pov"], np.uint8)
        return {
            "image": self._pov,
            "inventory": counts,
            "inventory_max": self.max_inventory.copy(),
            "equipped": equipped,
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None and hasattr(self.inner, "seed"):
            self.inner.seed(int(seed))
        self.reached = set()
        self.max_inventory = np.zeros(len(ITEMS), np.float32)
        raw = self.inner.reset()
        milestone_reward(raw.get("inventory", {}), self.reached)  # held at start: no reward
        self.health = health(raw)
        return self._obs(raw), {"milestones": sorted(self.reached)}

    def step(self, action):
        raw, env_reward, done, info = self.inner.step(minerl_action(int(action)))
        inventory = dict(raw.get("inventory", {}))
        if float(env_reward) >= 1024:  # ObtainDiamond's reward for the diamond itself
            inventory["diamond"] = max(1, int(inventory.get("diamond", 0)))
        reward, new = milestone_reward(inventory, self.reached)
        now = health(raw)
        if now is not None and self.health is not None:
            reward += HEALTH_SCALE * (now - self.health)
        self.health = now
        truncated = bool(done) and bool(info.get("TimeLimit.truncated", False))
        terminated = bool(done) and not truncated
        info = {"milestones": new}
        return self._obs(raw), reward, terminated, truncated, info

    def render(self):
        return self._pov

    def close(self) -> None:
        if hasattr(self.inner, "close"):
            self.inner.close()


def make_minecraft(
    task: str = "diamond",
    *,
    pixels: bool = True,
    size: int = 64,
    make_inner: Callable[[], Any] | None = None,
    **kwargs: Any,
) -> gym.Env:
    if task != "diamond":
        raise unknown_task("minecraft", task, ["diamond"])
    if make_inner is None:
        require("minerl", "minecraft", "minecraft", "(MineRL needs Java 8, see docs/domains.md)")
        import gym as old_gym  # MineRL registers its envs with the old gym package

        inner = old_gym.make("MineRLObtainDiamond-v0", **kwargs)
    else:
        inner = make_inner()
    return MinecraftDiamond(inner, size=size)
