"""The network the engine runs in a lower compute dtype: its linear layers cast once, not per call.

Under ``torch.autocast(dtype=bf16)`` every ``nn.Linear`` call casts its float32 weight and bias to
bf16 before the matmul, once per call: with 3 denoising passes, a clean pass and a memory write per
frame that is a few hundred casts of the same tensors per frame (``aten::copy_``, 9% of a frame at
batch 32: docs/rollout.md). :func:`low_precision_copy` casts them once. Autocast rounds a float32
weight to bf16 exactly as ``Tensor.to`` does and leaves an already-bf16 weight alone, so under
autocast the copy computes bit for bit what the original does (``tests/test_rollout.py``); outside
autocast it must not be called (its linear layers would refuse float32 inputs).

Only ``nn.Linear`` layers are cast: the rest (embeddings, norms, the LSTM cell, Mamba2/TTT's own
parameters) are ops autocast keeps in float32 or reads as they are, and ``patch_in``, whose bias is
also read directly as the tokens of a frame without a previous one, stays float32 too.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from world_model.network.model import RADModel


def low_precision_copy(model: RADModel, dtype: torch.dtype) -> RADModel:
    """A copy of ``model`` (the original is untouched) whose linear layers hold ``dtype`` weights;
    run it only under ``torch.autocast(dtype=dtype)``."""
    low = copy.deepcopy(model)
    for module in low.modules():
        if isinstance(module, nn.Linear) and module is not low.patch_in:
            module.to(dtype)
    return low.eval().requires_grad_(False)
