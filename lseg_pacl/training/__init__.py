"""Training machinery: planning a run, building its data and model, the Trainer and its callbacks,
checkpoints."""
