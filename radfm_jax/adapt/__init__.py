"""Adaptation of pretrained towers: LoRA adapters merged for export, label-efficiency sweeps and
their tables. Fine-tuning itself is an objective (objectives/classify.py) on the one trainer."""
