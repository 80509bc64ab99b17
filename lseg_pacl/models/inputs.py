"""The images a model takes, known from the config before the model is built (the data is built from it)."""

from __future__ import annotations

from dataclasses import dataclass

from lseg_pacl.errors import ConfigError


@dataclass(frozen=True)
class InputSpec:
    patch: int  # input sides must divide by this
    mean: tuple[float, ...]  # normalisation, per channel
    std: tuple[float, ...]

    def check_size(self, size: int, key: str) -> None:
        if size % self.patch:
            raise ConfigError(f"{key}={size} must divide by the image encoder's patch size {self.patch}")
