"""synthetic_ct: the embedded, procedurally generated chest CT data set (CT-RATE's record layout).

    builder = prepare(data_dir, num_train=1_500, num_val=150, num_test=300, image_size=64, seed=0)
    sources = builder.as_data_source()  # {"train" | "val" | "test": ArrayRecordDataSource}
"""

from radfm_jax.data.builders.synthetic_ct.builder import (
    SyntheticCt,
    SyntheticCtConfig,
    prepare,
)

__all__ = ["SyntheticCt", "SyntheticCtConfig", "prepare"]
