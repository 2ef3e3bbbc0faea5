"""TFDS builder for synthetic_ct: generated chest CT studies written as ArrayRecord, split by
patient, in CT-RATE's record layout so one volume pipeline reads both.

Records: "volume" uint8 (D, H, W, C), the HU rendering through ct_rate's volume_spec
(PreprocessSpec kind "volume3d": RAS, fixed spacing over CT-RATE's field of view, one channel per
window). In that layout D runs inferior -> superior, H anterior -> posterior and W from the
patient's right (W index 0) to the patient's left (W - 1). "report" ("FINDINGS: ...\nIMPRESSION:
...", through report_target), "labels" int8 0 / 1 in ct_rate.tables.LABEL_NAMES order (the
findings not rendered are always 0; no finding is all 0), "patient_id", "study_id", "sex" ("F" /
"M"), "age" int32 and "spacing" float32 (3,), mm along (D, H, W). Nothing is read from files, so
there is no "source_path" (nor CT-RATE's "hu"); the spec and the label names are recorded in the
data set's metadata as for the manual-folder builders.

Sizes: DataConfig's num_train / num_val / num_test defaults (20,000 / 1,000 / 2,000) are sized
for synthetic_cxr's radiographs; experiment files using synthetic_ct set their own counts. About
1,500 / 150 / 300 studies of 32 x 64 x 64 voxels (image_size 64) build in under three minutes on
two cores.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from radfm_jax.config.schema import DataConfig
from radfm_jax.data.builders.ct_rate.builder import (
    DEFAULT_WINDOWS,
    parse_window,
    volume_spec,
)
from radfm_jax.data.builders.ct_rate.tables import LABEL_NAMES
from radfm_jax.data.builders.features import VOLUME_BYTES_NOTE, volume_feature
from radfm_jax.data.builders.registered_configs import RegisteredConfigs
from radfm_jax.data.builders.synthetic_ct.render import render
from radfm_jax.data.builders.synthetic_ct.reports import write_report
from radfm_jax.data.builders.synthetic_ct.studies import (
    SEXES,
    SPLITS,
    Patients,
    Study,
    sample_patients,
    sample_study,
)
from radfm_jax.data.builders.synthetic_cxr.studies import SplitPlan, plan_splits
from radfm_jax.data.preprocessing import PreprocessSpec
from radfm_jax.data.report_sections import TARGETS, report_target

_CHUNK = 32  # studies rendered concurrently before they are written


@dataclasses.dataclass(eq=False)
class SyntheticCtConfig(tfds.core.BuilderConfig):
    """Size, preprocessing and report target of a build; the name (and so the folder) is
    derived from them. spec: a volume3d PreprocessSpec with a fixed spacing (ct_rate's
    volume_spec), the grid studies are rendered on."""

    name: str = dataclasses.field(init=False, default="")
    num_train: int = 1_500
    num_val: int = 150
    num_test: int = 300
    seed: int = 0
    spec: PreprocessSpec = dataclasses.field(default_factory=volume_spec)
    text_target: str = "both"

    def __post_init__(self):
        for field in ("num_train", "num_val", "num_test", "seed"):
            if getattr(self, field) < 0:
                raise ValueError(f"synthetic_ct: {field} must be >= 0, got {getattr(self, field)}")
        if self.spec.kind != "volume3d" or self.spec.spacing is None or not self.spec.windows:
            raise ValueError("synthetic_ct needs a volume3d spec with a spacing and windows "
                             f"(ct_rate's volume_spec), got {self.spec}")
        if self.text_target not in TARGETS:
            raise ValueError(f"synthetic_ct: text_target must be one of {TARGETS}, got {self.text_target!r}")
        self.name = (f"n{self.num_train}-v{self.num_val}-t{self.num_test}-seed{self.seed}"
                     f"-p{self.spec.fingerprint()}-text-{self.text_target}")
        self.description = (f"{self.num_train}/{self.num_val}/{self.num_test} train/val/test studies, "
                            f"seed {self.seed}, {self.spec.to_metadata()}")


def study_streams(seed: int, study: int) -> list[np.random.Generator]:
    """The independent generators of one study (drawing, rendering, writing): a function of the
    build seed and the study's global index only."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 2, study]).spawn(3)]


def make_example(config: SyntheticCtConfig, patients: Patients, patient: int, visit: int,
                 study: int) -> tuple[Study, dict[str, Any]]:
    """One study and its record."""
    study_rng, render_rng, text_rng = study_streams(config.seed, study)
    st = sample_study(patients, patient, visit, study, config.seed, study_rng)
    rendered = render(st, config.spec, render_rng)
    return st, {
        "volume": config.spec.apply_volume(rendered.volume),
        "report": report_target(write_report(st, rendered, text_rng), config.text_target),
        "labels": st.labels(LABEL_NAMES),
        "patient_id": st.patient_id,
        "study_id": st.study_id,
        "sex": SEXES[st.sex],
        "age": np.int32(st.age),
        # mm along the stored (D, H, W) axes: the spec's (i, j, k) spacing reversed.
        "spacing": np.asarray(config.spec.spacing[::-1], np.float32),
    }


class SyntheticCt(RegisteredConfigs, tfds.core.GeneratorBasedBuilder):
    """Procedurally generated chest CT volumes with free-text reports and CT-RATE's 18 labels."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": VOLUME_BYTES_NOTE}
    BUILDER_CONFIGS = [SyntheticCtConfig()]
    LABEL_NAMES = LABEL_NAMES
    # Nothing is downloaded, so there is no checksum file to find (see synthetic_cxr).
    code_path = None

    @classmethod
    def config_for(cls, data_cfg: DataConfig) -> SyntheticCtConfig:
        """Volumes of (image_size / 2, image_size, image_size) voxels over ct_rate's field of
        view, windowed by data.windows or lung + mediastinum, as CtRate.config_for."""
        size = (max(1, data_cfg.image_size // 2), data_cfg.image_size, data_cfg.image_size)
        windows = tuple(parse_window(w) for w in data_cfg.windows) or DEFAULT_WINDOWS
        return SyntheticCtConfig(num_train=data_cfg.num_train, num_val=data_cfg.num_val,
                                 num_test=data_cfg.num_test, seed=data_cfg.build_seed,
                                 spec=volume_spec(size, windows), text_target=data_cfg.text_target)

    def _info(self) -> tfds.core.DatasetInfo:
        spec = self.builder_config.spec
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "volume": volume_feature(spec.size, spec.channels),
                "report": tfds.features.Text(),
                "labels": tfds.features.Tensor(shape=(len(LABEL_NAMES),), dtype=np.int8),
                "patient_id": tfds.features.Text(),
                "study_id": tfds.features.Text(),
                "sex": tfds.features.Text(),
                "age": tfds.features.Scalar(dtype=np.int32),
                "spacing": tfds.features.Tensor(shape=(3,), dtype=np.float32),
            }),
            metadata=tfds.core.MetadataDict(preprocess=spec.to_metadata(), label_names=list(LABEL_NAMES)),
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        cfg = self.builder_config
        plans = plan_splits({"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}, cfg.seed)
        num_patients = max((int(p.patient.max()) + 1 for p in plans.values() if len(p.patient)), default=0)
        patients = sample_patients(num_patients, cfg.seed)
        return {split: self._generate_examples(plans[split], patients) for split in SPLITS}

    def _generate_examples(self, plan: SplitPlan, patients: Patients) -> Iterator[tuple[str, dict[str, Any]]]:
        rows = [(int(p), int(v), int(s)) for p, v, s in zip(plan.patient, plan.visit, plan.study)]

        def make(row: tuple[int, int, int]) -> tuple[Study, dict[str, Any]]:
            return make_example(self.builder_config, patients, *row)

        # NumPy / SciPy release the GIL on whole-volume work, so threads render in parallel;
        # every study has its own generators, so the records do not depend on the thread count.
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for start in range(0, len(rows), _CHUNK):
                for st, example in pool.map(make, rows[start:start + _CHUNK]):
                    yield st.study_id, example


def prepare(data_dir: str, *, num_train: int = 1_500, num_val: int = 150, num_test: int = 300,
            image_size: int = 64, seed: int = 0, windows: tuple[str, ...] = (),
            text_target: str = "both") -> SyntheticCt:
    """Build the data set under data_dir unless that configuration is already built; return it.
    windows: data.windows entries (preset names or "center,width"); empty = lung + mediastinum."""
    data_cfg = DataConfig(name="synthetic_ct", num_train=num_train, num_val=num_val, num_test=num_test,
                          image_size=image_size, build_seed=seed, windows=tuple(windows),
                          text_target=text_target)
    tfds.disable_progress_bar()
    builder = SyntheticCt(config=SyntheticCt.config_for(data_cfg), data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()  # a no-op when this configuration's folder is complete
    return builder
