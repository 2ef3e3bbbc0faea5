"""Published checkpoints in and out: tensor files (tensor_files.py), the Hugging Face CLIP
layout (hf_clip.py), which checkpoint a path holds and what config describes it
(published.py), and `radfm weights export` (export.py)."""
