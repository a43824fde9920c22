"""The diffusion process, apart from the network: the noise schedule and objective pieces
(:mod:`.schedule`) and DDIM sampling of one frame (:mod:`.ddim`). No parameters."""
