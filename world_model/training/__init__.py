"""Training: one generic trainer for every objective ``forward(batch) -> (loss, logs)``.

:mod:`.trainer` (the optimisation loop, EMA, non-finite guard, train state), :mod:`.objective`
(the world model's diffusion-forcing objective), :mod:`.distributed` (torchrun / DDP),
:mod:`.run` (``rad train``: a world trained into a run directory), :mod:`.vae` and
:mod:`.vae_files` (``rad train-vae``: a per-frame AutoencoderKL with the same trainer).
"""
