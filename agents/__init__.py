"""Agents that learn inside the learned world and are scored in the real one.

* :mod:`agents.ppo` - stable-baselines3 PPO trained in imagination on the batched
  :class:`rad_env.vector.RADVecEnv`.
* :mod:`agents.evaluate` - a policy's returns in the REAL Memory Maze (same spaces, so the agent
  moves over unchanged).

Importing this package imports nothing heavy; the modules load torch and stable-baselines3.
"""
