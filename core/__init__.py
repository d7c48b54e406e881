"""The science of amltui: data, models, attacks, losses, training, evaluation (no UI, no store)."""
