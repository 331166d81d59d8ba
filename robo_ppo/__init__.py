"""robo_ppo: PPO for MuJoCo locomotion, from Hydra configs to ONNX controllers."""

__version__ = "0.1.0"
