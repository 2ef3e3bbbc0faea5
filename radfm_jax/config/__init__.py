"""Typed experiment configs, presets and command-line override parsing."""
