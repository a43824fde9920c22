"""Episode data: the file format (:mod:`.format`) and training datasets of random windows
(:mod:`.dataset`). Imports nothing of the rest of ``world_model`` but errors and atomic writes."""
