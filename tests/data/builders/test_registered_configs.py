"""Every builder survives a pickle round trip with its registered default configuration, as a
Grain worker process rebuilds it (an equal copy of a registered config used to be refused)."""

from __future__ import annotations

import pickle

import pytest
import tensorflow_datasets as tfds

from radfm_jax.data.builders.registry import BUILDERS


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_default_configuration_survives_a_pickle_round_trip(name, tmp_path):
    cls = BUILDERS[name]
    default = cls.BUILDER_CONFIGS[0]
    builder = cls(config=default, data_dir=str(tmp_path), file_format="array_record")
    copy = pickle.loads(pickle.dumps(builder))
    assert copy.builder_config is default and copy.data_dir == builder.data_dir


def test_an_equal_copy_of_the_default_stands_for_it_and_a_different_config_stays_custom(tmp_path):
    from radfm_jax.data.builders.synthetic_cxr.builder import SyntheticCxr, SyntheticCxrConfig

    builder = SyntheticCxr(config=SyntheticCxrConfig(), data_dir=str(tmp_path))
    assert builder.builder_config is SyntheticCxr.BUILDER_CONFIGS[0]
    custom = SyntheticCxrConfig(num_train=10)
    assert SyntheticCxr(config=custom, data_dir=str(tmp_path)).builder_config is custom
    assert isinstance(builder, tfds.core.GeneratorBasedBuilder)
