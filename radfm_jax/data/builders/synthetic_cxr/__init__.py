"""synthetic_cxr: the embedded, procedurally generated chest radiograph data set.

    builder = prepare(data_dir, num_train=20_000, num_val=1_000, num_test=2_000, image_size=64, seed=0)
    sources = builder.as_data_source()  # {"train" | "val" | "test": ArrayRecordDataSource}
"""

from radfm_jax.data.builders.synthetic_cxr.builder import SyntheticCxr, SyntheticCxrConfig, prepare

__all__ = ["SyntheticCxr", "SyntheticCxrConfig", "prepare"]
