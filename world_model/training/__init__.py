"""Training: one generic trainer for every objective ``forward(batch) -> (loss, logs)``.

:mod:`.trainer` (the optimisation loop, EMA, non-finite guard, train state), :mod:`.objective`
(the world model's diffusion-forcing objective), :mod:`.distributed` (torchrun / DDP),
:mod:`.run_dir` and :mod:`.train_state` (every trainer's run directory: checkpoints, exact
resume, the ``train_state.pt`` format), :mod:`.run` (``rad train``: a world trained into a run
directory), :mod:`.vae` and :mod:`.vae_files` (``rad train-vae``: a per-frame VAE with the same
trainer), :mod:`.idm` (``rad train-idm``: the inverse-dynamics judge).
"""
