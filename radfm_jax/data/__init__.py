"""Data: builders (raw files -> ArrayRecord), Grain pipelines, transforms, tokenizer."""
