"""The rollout engine: B worlds generated frame by frame at O(1) cost per frame.

:mod:`.rollout` (``RolloutEngine``) drives the network and the sampler; :mod:`.world_state`
(``WorldState``) is the explicit, clonable state it updates; :mod:`.checks` validates the frames
and actions that enter from outside, once, at the boundary.
"""
