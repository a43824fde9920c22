"""Real-environment data: simulators, collection, evaluation sets and training datasets."""
