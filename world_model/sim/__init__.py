"""The real simulators and what runs them: Memory Maze headless (:mod:`.memory_maze`), as a
Gymnasium env (:mod:`.maze_env`), maze navigation and scripted policies, recording episodes
(:mod:`.recorder`), data collection (:mod:`.collect`) and evaluation sets (:mod:`.evalset`) on a
process pool (:mod:`.pool`).

Importing this package imports nothing: ``rad_env`` reads constants from :mod:`.memory_maze`
without loading a simulator.
"""
