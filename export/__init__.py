"""The deployment kit (``robo_ppo.deploy_kit`` when installed): numpy + onnxruntime, no torch.

Each module also runs from a plain copy of this folder (``python deploy.py ...``); training imports
the robot-side rules from here (``rules``, ``robot_metadata``, ``scene``), so both sides share one
definition of each.
"""
