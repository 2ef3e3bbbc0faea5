"""data.name -> TFDS builder class, and preparing (building if needed) the data set a DataConfig
names. The mapping is explicit: adding a data set means adding a line here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds

from radfm_jax.config.overrides import nearest
from radfm_jax.config.schema import DataConfig
from radfm_jax.data.builders import synthetic_ct, synthetic_cxr
from radfm_jax.data.builders.chexpert import Chexpert
from radfm_jax.data.builders.chexpert_plus import ChexpertPlus
from radfm_jax.data.builders.common import ManualBuilder
from radfm_jax.data.builders.ct_rate import CtRate
from radfm_jax.data.builders.manual_folder import require_manual_dir
from radfm_jax.data.builders.mimic_cxr import MimicCxr
from radfm_jax.data.builders.nih_cxr14 import NihCxr14, NihCxr14Expert
from radfm_jax.data.builders.openi import OpenI
from radfm_jax.data.builders.rsna_pneumonia import RsnaPneumonia
from radfm_jax.data.builders.siim_acr_pneumothorax import SiimAcrPneumothorax
from radfm_jax.data.findings import FINDINGS
from radfm_jax.errors import ConfigError

log = logging.getLogger(__name__)

BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "synthetic_cxr": synthetic_cxr.SyntheticCxr,
    "synthetic_ct": synthetic_ct.SyntheticCt,
    "mimic_cxr": MimicCxr,
    "chexpert": Chexpert,
    "chexpert_plus": ChexpertPlus,
    "nih_cxr14": NihCxr14,
    "nih_cxr14_expert": NihCxr14Expert,
    "openi": OpenI,
    "ct_rate": CtRate,
    "rsna_pneumonia": RsnaPneumonia,
    "siim_acr_pneumothorax": SiimAcrPneumothorax,
}


def builder_class(name: str) -> type[tfds.core.GeneratorBasedBuilder]:
    if name not in BUILDERS:
        raise ConfigError(f"no builder for data set '{name}' (did you mean '{nearest(name, BUILDERS)}'?); "
                          f"known: {', '.join(BUILDERS)}")
    return BUILDERS[name]


def prepare_dataset(data_cfg: DataConfig, data_dir: Path) -> tfds.core.DatasetBuilder:
    """The data set data_cfg names, built under data_dir unless that build already exists.

    Real data sets are read from data_cfg.manual_dir, which is only needed for the first build,
    as is the pseudonym key (data_cfg.pseudonym_key, else $RADFM_PSEUDONYM_KEY, else the default
    under the user's config folder: data/builders/pseudonyms.py).
    """
    if data_cfg.name == "synthetic_cxr":
        return synthetic_cxr.prepare(
            str(data_dir), num_train=data_cfg.num_train, num_val=data_cfg.num_val,
            num_test=data_cfg.num_test, image_size=data_cfg.image_size, seed=data_cfg.build_seed,
            subgroup_shift=data_cfg.subgroup_shift)
    if data_cfg.name == "synthetic_ct":
        if data_cfg.subgroup_shift != "none":
            raise ConfigError(f"data.subgroup_shift={data_cfg.subgroup_shift!r} is a synthetic_cxr "
                              "option; leave it at 'none' for synthetic_ct")
        return synthetic_ct.prepare(
            str(data_dir), num_train=data_cfg.num_train, num_val=data_cfg.num_val,
            num_test=data_cfg.num_test, image_size=data_cfg.image_size, seed=data_cfg.build_seed,
            windows=data_cfg.windows, text_target=data_cfg.text_target)
    cls = builder_class(data_cfg.name)
    if data_cfg.subgroup_shift != "none":
        raise ConfigError(f"data.subgroup_shift={data_cfg.subgroup_shift!r} is a synthetic_cxr option; "
                          f"'{data_cfg.name}' is real data: leave it at 'none'")
    if not issubclass(cls, ManualBuilder):
        raise ConfigError(f"data set '{data_cfg.name}' has no manual-folder builder")
    config = cls.config_for(data_cfg)
    tfds.disable_progress_bar()
    builder = cls(config=config, data_dir=str(data_dir), file_format="array_record",
                  pseudonym_key=data_cfg.pseudonym_key)
    if not builder.is_prepared():
        manual_dir = require_manual_dir(data_cfg.manual_dir, data_cfg.name, cls.LAYOUT)
        log.info("building %s (%s) from %s into %s", cls.name, config.name, manual_dir,
                 builder.data_dir)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


def _metadata(builder: tfds.core.DatasetBuilder) -> dict[str, Any]:
    metadata = builder.info.metadata
    return dict(metadata) if metadata is not None else {}


def label_names(builder: tfds.core.DatasetBuilder) -> tuple[str, ...]:
    """The finding each position of the records' label vector stands for."""
    names = _metadata(builder).get("label_names")
    if names:
        return tuple(names)
    if isinstance(builder, synthetic_cxr.SyntheticCxr):
        return FINDINGS
    raise ConfigError(f"data set {builder.name} in {builder.data_dir} records no label names; "
                      "it was built by older code: delete that folder to rebuild it")


def recorded_spec(builder: tfds.core.DatasetBuilder) -> dict[str, Any] | None:
    """The preprocessing spec (PreprocessSpec.to_metadata()) the data set was built with, or
    None when it records none (synthetic_cxr renders at its size and records no spec)."""
    return _metadata(builder).get("preprocess")


def build_summary(builder: tfds.core.DatasetBuilder) -> dict[str, Any] | None:
    """Examples written per split and records skipped / filtered by reason, or None."""
    return _metadata(builder).get("build_summary")


def declared_label_names(name: str) -> tuple[str, ...]:
    """The label vocabulary data set `name`'s builder declares, without opening a build (what
    a model sized by its labels needs when planned without data)."""
    cls = builder_class(name)
    return tuple(getattr(cls, "LABEL_NAMES", ())) or FINDINGS
