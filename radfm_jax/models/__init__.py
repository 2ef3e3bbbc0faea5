"""Flax NNX models: towers (models/towers.py maps names to them) and the composite models
objectives train. Every parameter carries logical axis names (see parallel/rules.py)."""
