"""``python -m robo_ppo.replay``: the ``robo-ppo-replay`` command."""

from robo_ppo.replay.config import main

main()
