"""The prepared-record schema every chest X-ray builder writes and every pipeline reads."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from radfm_jax.data.findings import FINDINGS


def cxr_features(image_size: int) -> tfds.features.FeaturesDict:
    """image uint8 (S, S, 1), report text, labels int8 (len(FINDINGS),) CheXpert values,
    pseudonymous patient / study ids, view, sex and age."""
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(image_size, image_size, 1), dtype=np.uint8),
        "report": tfds.features.Text(),
        "labels": tfds.features.Tensor(shape=(len(FINDINGS),), dtype=np.int8),
        "patient_id": tfds.features.Text(),
        "study_id": tfds.features.Text(),
        "view": tfds.features.Text(),
        "sex": tfds.features.Text(),
        "age": tfds.features.Scalar(dtype=np.int32),
    })
