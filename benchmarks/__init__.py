"""robo_ppo benchmarks: engine throughput, rollout and training SPS, SB3 side by side.

Entry point: ``python -m benchmarks.run`` (see benchmarks/README.md).
"""
