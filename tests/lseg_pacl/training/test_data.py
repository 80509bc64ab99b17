"""The training DataModules built from a run's config and spec."""

import pytest

from lseg_pacl.config.loading import load_config
from lseg_pacl.errors import ConfigError
from lseg_pacl.training.data import shard_stream
from lseg_pacl.training.inputs import shard_sources


def test_a_split_that_does_not_fit_the_processes_is_a_config_error(tmp_path):
    urls = "['" + str(tmp_path / "{00000..00003}.tar") + "']"
    cfg = load_config(
        "pacl_vitb16_shards",
        [
            f"data.train.shards=[{{urls: {urls}}}]",
            "data.train.resampled=false",
            "data.num_workers=4",
            "data.batch_size=8",
        ],
    )
    shard_stream(shard_sources(cfg), None, cfg, rank=0, world_size=1)  # 4 shards feed 1 x 4 streams
    with pytest.raises(ConfigError, match="2 processes x 4 workers.*cannot feed"):
        shard_stream(shard_sources(cfg), None, cfg, rank=1, world_size=2)
