"""A TFDS builder mixin: a builder config equal, field by field, to a registered one stands for
it. TFDS accepts a registered configuration's name only as that very instance, so an equal copy
fails with "Cannot name a custom BuilderConfig the same as an available BuilderConfig". Copies
arise whenever a builder is unpickled: each Grain worker process rebuilds the TFDS data
source's builder from its pickled arguments, so the default configuration crashed every worker."""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow_datasets as tfds


def _fields(config: tfds.core.BuilderConfig) -> dict[str, Any]:
    return {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}


class RegisteredConfigs:
    """Mix in before tfds.core.GeneratorBasedBuilder."""

    def _create_builder_config(self, builder_config, version):
        if isinstance(builder_config, tfds.core.BuilderConfig):
            registered = self.builder_configs.get(builder_config.name)
            if registered is not None and _fields(registered) == _fields(builder_config):
                builder_config = registered
        return super()._create_builder_config(builder_config, version)
