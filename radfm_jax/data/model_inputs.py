"""What a model sees of a data set: the spatial shape and channels of its image input, 2D
radiographs or 3D volumes. Light (no Grain, no TFDS), so model assembly and `radfm compile`
can ask without loading the input pipeline."""

from __future__ import annotations

from radfm_jax.config.schema import DataConfig
from radfm_jax.errors import ConfigError

# Data sets whose records hold a (D, H, W, C) "volume" rather than a 2D "image".
VOLUME_DATASETS: frozenset[str] = frozenset({"ct_rate", "synthetic_ct"})
# The HU windows a volume builder stacks as channels when data.windows is empty.
DEFAULT_CT_WINDOWS: tuple[str, ...] = ("lung", "mediastinum")


def is_volume_dataset(name: str) -> bool:
    """Whether data set `name` is volumetric (its records hold a "volume")."""
    return name in VOLUME_DATASETS


def volume_input_shape(data_cfg: DataConfig) -> tuple[int, int, int]:
    """The model's (D, H, W) volume size: (input_size // 2, input_size, input_size), the rule
    CtRate.config_for uses for the stored size (half as many slices: thicker voxels along z)."""
    size = data_cfg.input_size
    return (max(1, size // 2), size, size)


def volume_spacing(data_cfg: DataConfig) -> tuple[float, float, float] | None:
    """data.volume_spacing as (D, H, W) mm, or None to keep the stored voxels; a ConfigError
    when it is set for 2D images or does not hold three sizes."""
    spacing = tuple(float(s) for s in data_cfg.volume_spacing)
    if not spacing:
        return None
    if not is_volume_dataset(data_cfg.name):
        raise ConfigError(f"data.volume_spacing applies to volumes; {data_cfg.name!r} holds 2D images "
                          "(unset data.volume_spacing)")
    if len(spacing) != 3:
        raise ConfigError(f"data.volume_spacing must hold three sizes in mm along (D, H, W), e.g. "
                          f"1.5,1.5,1.5; got {len(spacing)}: {spacing}")
    return spacing  # type: ignore[return-value]


def input_shape(data_cfg: DataConfig) -> tuple[int, ...]:
    """The spatial shape of model inputs: (D, H, W) volumes or (input_size, input_size) images."""
    if is_volume_dataset(data_cfg.name):
        return volume_input_shape(data_cfg)
    return (data_cfg.input_size, data_cfg.input_size)


def input_channels(data_cfg: DataConfig) -> int:
    """Channels of model inputs: one per HU window for volumes, 1 for (grayscale) radiographs."""
    if is_volume_dataset(data_cfg.name):
        return len(data_cfg.windows) or len(DEFAULT_CT_WINDOWS)
    return 1
