"""A vectorised target-contact check for Memory Maze, installed explicitly.

dm_control's ``TargetSphere._update_activation`` loops in Python over every MuJoCo contact, for
every target, after every physics substep (50 substeps per 4 Hz control step, 3 to 6 targets).
That loop is about 60% of a Memory Maze step. :func:`patch_target_contacts` swaps it, process-wide,
for the same test written with numpy over the contact arrays; frames and rewards are unchanged
(``tests/test_fast_maze.py`` checks this against the original). :func:`unpatch_target_contacts`
restores the original; :func:`fast_target_contacts` switches either way for a ``with`` block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

_ORIGINAL = "_rad_original_update_activation"


def _target_sphere_class():
    from world_model.sim.memory_maze import _tasks_module

    _tasks_module()  # sets MUJOCO_GL before dm_control is first imported
    from dm_control.locomotion.props import target_sphere

    return target_sphere.TargetSphere


def _fast_update_activation(self, physics) -> None:
    """Same result as ``TargetSphere._update_activation``: activate the target (and hide it) when
    any current contact involves its geom (and, if set, one of ``_specific_collision_geom_ids``)."""
    if self._activated:
        return
    geoms = physics.data.ptr.contact.geom  # (ncon, 2) int32 of the ncon current contacts
    if geoms.shape[0] == 0:
        return
    hit = (geoms == self._geom_id).any(axis=1)
    if self._specific_collision_geom_ids:
        hit &= np.isin(geoms, list(self._specific_collision_geom_ids)).any(axis=1)
    if hit.any():
        self._activated = True
        physics.bind(self._material).rgba[-1] = 0


def patch_target_contacts() -> bool:
    """Install the vectorised contact check for every ``TargetSphere`` in this process.

    Returns ``True`` if it was installed now, ``False`` if it already was. Call it in each worker
    process (a patch does not cross a ``spawn``).
    """
    cls = _target_sphere_class()
    if hasattr(cls, _ORIGINAL):
        return False
    setattr(cls, _ORIGINAL, cls._update_activation)
    cls._update_activation = _fast_update_activation
    return True


def unpatch_target_contacts() -> bool:
    """Restore dm_control's original check. Returns ``False`` if it was not patched."""
    cls = _target_sphere_class()
    if not hasattr(cls, _ORIGINAL):
        return False
    cls._update_activation = getattr(cls, _ORIGINAL)
    delattr(cls, _ORIGINAL)
    return True


def is_patched() -> bool:
    """Whether :func:`patch_target_contacts` is in effect in this process."""
    return hasattr(_target_sphere_class(), _ORIGINAL)


@contextlib.contextmanager
def fast_target_contacts(enabled: bool = True) -> Iterator[None]:
    """Within the block, use the vectorised check (``enabled``) or the original one; afterwards
    restore whichever was in effect before."""
    was_patched = is_patched()
    patch_target_contacts() if enabled else unpatch_target_contacts()
    try:
        yield
    finally:
        patch_target_contacts() if was_patched else unpatch_target_contacts()
