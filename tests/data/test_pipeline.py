"""Grain pipeline, transforms and device placement, on a tiny TFDS data set built here."""

from __future__ import annotations

import dataclasses

import grain
import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from radfm_jax.config.schema import DataConfig
from radfm_jax.data import transforms as T
from radfm_jax.data.device_put import prefetch_to_device, to_global_batch
from radfm_jax.data.findings import FINDINGS
from radfm_jax.data.pipeline import make_eval_batches, make_train_loader, prepare_tokenizer

IMAGE_SIZE = 32
NUM_TRAIN = 200
NUM_TEST = 37
_WORDS = (
    "heart size normal no pleural effusion pneumothorax lungs clear mild cardiomegaly left right "
    "lower lobe consolidation support devices in place nodule stable small large"
).split()


def _report(rng: np.random.Generator, i: int) -> str:
    findings = " ".join(rng.choice(_WORDS, size=int(rng.integers(5, 25))))
    impression = " ".join(rng.choice(_WORDS, size=int(rng.integers(2, 8))))
    return f"FINDINGS: record {i} {findings}.\nIMPRESSION: {impression}."


class TinyCxr(tfds.core.GeneratorBasedBuilder):
    """Same features as synthetic_cxr, random content; the image's [0, 0] pixel is i % 256."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8),
                    "report": tfds.features.Text(),
                    "labels": tfds.features.Tensor(shape=(len(FINDINGS),), dtype=np.int8),
                    "patient_id": tfds.features.Text(),
                    "study_id": tfds.features.Text(),
                    "view": tfds.features.Text(),
                    "sex": tfds.features.Text(),
                    "age": tfds.features.Scalar(dtype=np.int32),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(NUM_TRAIN, 0), "test": self._generate_examples(NUM_TEST, 1)}

    def _generate_examples(self, n, seed):
        rng = np.random.default_rng(seed)
        for i in range(n):
            image = rng.integers(0, 256, size=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
            image[0, 0, 0] = i % 256
            yield f"{seed}-{i}", {
                "image": image,
                "report": _report(rng, i),
                "labels": rng.integers(-2, 2, size=(len(FINDINGS),)).astype(np.int8),
                "patient_id": f"p{i}",
                "study_id": f"s{i}",
                "view": "PA",
                "sex": "F",
                "age": np.int32(40 + i % 50),
            }


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = TinyCxr(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()
    return builder.as_data_source()
