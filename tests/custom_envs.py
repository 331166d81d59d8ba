"""A user's own robot, as gymnasium registers it: importing this module registers
``PointReach-v0``, so ``env.id=custom_envs:PointReach-v0`` works (gymnasium's
``module:EnvId`` form) without robo_ppo knowing the task."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class PointReach(gym.Env):
    """A 2-D point mass pushed by a bounded force towards a random target.

    Observation ``[x, y, vx, vy, tx, ty]`` (float64); action: force in
    ``[-1, 1]^2``; reward ``-|p - t| - 0.01 |a|^2``; 100 steps per episode
    (the registered time limit). The whole state lives in ``self.state``, so
    robo_ppo's gymnasium engine can snapshot it for exact resume.
    """

    metadata = {"render_modes": []}
    dt = 0.05

    def __init__(self, friction: float = 0.5):
        self.friction = float(friction)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (6,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.state = np.zeros(6)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.state = np.concatenate([self.np_random.uniform(-1, 1, 2), np.zeros(2),
                                     self.np_random.uniform(-1, 1, 2)])
        return self.state.copy(), {}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        pos, vel, target = self.state[:2], self.state[2:4], self.state[4:]
        vel = vel + self.dt * (a - self.friction * vel)
        pos = pos + self.dt * vel
        self.state = np.concatenate([pos, vel, target])
        reward = -float(np.linalg.norm(pos - target)) - 0.01 * float(a @ a)
        return self.state.copy(), reward, False, False, {}


if "PointReach-v0" not in gym.registry:
    gym.register("PointReach-v0", entry_point=PointReach, max_episode_steps=100)
