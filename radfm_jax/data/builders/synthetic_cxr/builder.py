"""TFDS builder for synthetic_cxr: generated studies written as ArrayRecord, split by patient."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from radfm_jax.data.builders.features import cxr_features
from radfm_jax.data.builders.registered_configs import RegisteredConfigs
from radfm_jax.data.builders.synthetic_cxr.render import render, subgroup_shifted
from radfm_jax.data.builders.synthetic_cxr.reports import write_reports
from radfm_jax.data.builders.synthetic_cxr.studies import (
    CHUNK_SIZE,
    SEXES,
    SPLITS,
    VIEWS,
    SplitPlan,
    plan_splits,
    sample_patients,
    sample_studies,
)

SUBGROUP_SHIFTS = ("none", "sex")


@dataclasses.dataclass(eq=False)
class SyntheticCxrConfig(tfds.core.BuilderConfig):
    """Size and rendering of a build; the name (and so the folder) is derived from them.

    subgroup_shift: "none", or "sex" to draw the findings of female patients' studies more
    subtly (smaller, fainter; reports and labels unchanged), a known subgroup gap for subgroup
    analyses to find. A shifted build's name ends in "-shift-<kind>"; "none" adds nothing, so
    unshifted builds keep their folders."""

    name: str = dataclasses.field(init=False, default="")
    num_train: int = 20_000
    num_val: int = 1_000
    num_test: int = 2_000
    image_size: int = 64
    seed: int = 0
    subgroup_shift: str = "none"

    def __post_init__(self):
        for field in ("num_train", "num_val", "num_test", "seed"):
            if getattr(self, field) < 0:
                raise ValueError(f"synthetic_cxr: {field} must be >= 0, got {getattr(self, field)}")
        if not 32 <= self.image_size <= 1024:
            raise ValueError(f"synthetic_cxr: image_size must be in [32, 1024], got {self.image_size}")
        if self.subgroup_shift not in SUBGROUP_SHIFTS:
            raise ValueError(f"synthetic_cxr: subgroup_shift must be one of {SUBGROUP_SHIFTS}, "
                             f"got {self.subgroup_shift!r}")
        shifted = self.subgroup_shift != "none"
        self.name = (f"n{self.num_train}-v{self.num_val}-t{self.num_test}"
                     f"-s{self.image_size}-seed{self.seed}"
                     + (f"-shift-{self.subgroup_shift}" if shifted else ""))
        self.description = (f"{self.num_train}/{self.num_val}/{self.num_test} train/val/test studies, "
                            f"{self.image_size}px, seed {self.seed}"
                            + (f", subgroup shift '{self.subgroup_shift}' (female patients' "
                               "findings drawn more subtly)" if shifted else ""))


class SyntheticCxr(RegisteredConfigs, tfds.core.GeneratorBasedBuilder):
    """Procedurally generated chest radiographs with free-text reports and CheXpert labels."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First release.",
                     "1.1.0": "Reports in varied wording: synonyms, signs, post-posed and passive negation."}
    BUILDER_CONFIGS = [SyntheticCxrConfig()]
    # Nothing is downloaded, so there is no checksum file to find; TFDS's lookup of one next to a
    # packaged builder needs the optional importlib_resources package, which may be absent.
    code_path = None

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=cxr_features(self.builder_config.image_size),
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        cfg = self.builder_config
        counts = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
        plans = plan_splits(counts, cfg.seed)
        num_patients = max((int(p.patient.max()) + 1 for p in plans.values() if len(p.patient)), default=0)
        patients = sample_patients(num_patients, cfg.seed)
        return {split: self._generate_examples(split, plans[split], patients) for split in SPLITS}

    def _generate_examples(self, split: str, plan: SplitPlan, patients) -> Iterator[tuple[str, dict[str, Any]]]:
        cfg = self.builder_config
        split_index = SPLITS.index(split)
        for chunk, start in enumerate(range(0, len(plan.study), CHUNK_SIZE)):
            rows = slice(start, start + CHUNK_SIZE)
            part = SplitPlan(plan.patient[rows], plan.visit[rows], plan.study[rows])
            # Independent streams per (seed, split, chunk): records do not depend on build order.
            study_rng, image_rng, text_rng = (
                np.random.default_rng([cfg.seed, split_index, chunk, k]) for k in range(3))
            st = sample_studies(part, patients, study_rng, cfg.seed)
            images = render(st, cfg.image_size, image_rng, subgroup_shifted(st, cfg.subgroup_shift))
            reports, labels = write_reports(st, text_rng)
            for i, study_id in enumerate(st.study_id):
                yield study_id, {
                    "image": images[i, :, :, None],
                    "report": reports[i],
                    "labels": labels[i],
                    "patient_id": st.patient_id[i],
                    "study_id": study_id,
                    "view": VIEWS[st.view[i]],
                    "sex": SEXES[st.sex[i]],
                    "age": np.int32(st.age[i]),
                }


def prepare(data_dir: str, *, num_train: int = 20_000, num_val: int = 1_000, num_test: int = 2_000,
            image_size: int = 64, seed: int = 0, subgroup_shift: str = "none") -> SyntheticCxr:
    """Build the data set under data_dir unless that configuration is already built; return it."""
    tfds.disable_progress_bar()
    config = SyntheticCxrConfig(num_train=num_train, num_val=num_val, num_test=num_test,
                                image_size=image_size, seed=seed, subgroup_shift=subgroup_shift)
    builder = SyntheticCxr(config=config, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()  # a no-op when this configuration's folder is complete
    return builder
