"""The RAD network: layers, memory blocks, the window geometry, the RAD layer and the model.

Nothing here knows the noise schedule, the sampler, the rollout engine or the trainer; it imports
only ``world_model.config``. Reading order: :mod:`.memory` (LSTM / Mamba2 / TTT behind one
interface), :mod:`.layers` (RoPE, adaLN, attention, MLP, and the RAD layer built from them),
:mod:`.windows` (which frames a frame attends to and which memory state it reads),
:mod:`.model` (``RADModel`` and its three passes).
"""
