"""What a robo_ppo robot task is: a pure-JAX environment the batched engine steps.

A task is a class with

* ``reset(key) -> TaskState`` and ``step(state, actions) -> TaskState``, pure
  functions of one environment that ``robo_ppo.envs.brax_env`` vmaps over
  ``num_envs`` and jit-compiles (GPU with a CUDA jaxlib, else CPU);
* ``obs_size``, ``critic_obs_size`` (0: the critic sees the actor's obs),
  ``action_size``, ``dt`` (seconds per step), ``action_low`` / ``action_high``;
* ``reward_terms``: names of the reward terms, in the order of
  ``TaskState.reward_terms`` (each is logged as ``reward/<term>``);
* ``metadata()``: what a robot-side program needs (joint order, gains, the
  observation layout, ...); it goes into the exported ONNX file.

Time limits, auto-reset and episode statistics are the engine's job, not the task's.
To add a robot, copy ``go1_joystick.py``, its ``conf/env/go1_joystick.yaml`` and
``tests/test_go1_joystick.py``, and register the class in ``robo_ppo/tasks/__init__.py``.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class TaskState(NamedTuple):
    """One environment's state (a JAX pytree; batched by the engine along a new axis 0)."""

    data: Any
    """``mujoco.mjx.Data``: the physics state."""
    obs: Any
    """float32 ``[obs_size]``: the actor's observation (with sensor noise)."""
    critic_obs: Any
    """float32 ``[critic_obs_size]``: the critic's privileged, noise-free observation."""
    reward: Any
    """float32 scalar: this step's reward."""
    done: Any
    """float32 scalar: 1.0 when the episode terminated (a failure, not a time limit)."""
    reward_terms: Any
    """float32 ``[len(reward_terms)]``: each term's contribution to ``reward`` (before its clip)."""
    info: dict
    """Task bookkeeping: PRNG key, command, timers, domain-randomized parameters, ..."""


def layout_offsets(layout) -> list[dict[str, Any]]:
    """``[{"name", "start", "size"}, ...]`` of a layout given as ``(name, size)`` pairs."""
    out, start = [], 0
    for name, size in layout:
        out.append({"name": name, "start": start, "size": size})
        start += size
    return out


def observation_names(layout) -> list[str]:
    """Per-entry names of a ``(name, size)`` layout, e.g. ``gyro[0]``."""
    return [f"{name}[{i}]" for name, size in layout for i in range(size)]
