"""Scaling-law ablations: sweeps over model size x data size x compute, fitted power laws and plots."""
