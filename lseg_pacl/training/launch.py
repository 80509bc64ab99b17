"""How this process was launched, read from the environment in one place, and the one thing it passes on.

Several processes of one run must agree on its directory and id without talking: torchrun and SLURM start them
together (they share a job id), and Lightning's DDP launcher re-runs the command line for ranks 1..N-1 after
rank 0 has planned. The environment is the only channel to those re-run ranks, so rank 0 publishes its plan's
directory and id there (``published``) and they read it back here (``Launch.from_environ``); nothing else
reads or writes these variables.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from data_modules.ranks import place

RUN_DIR_ENV = "LSEG_PACL_RUN_DIR"
RUN_ID_ENV = "LSEG_PACL_RUN_ID"


def _count(environ: Mapping[str, str], name: str) -> int:
    value = environ.get(name, "") or "1"
    return int(value) if value.isdigit() else 1


@dataclass(frozen=True)
class Launch:
    rank: int  # this process's global rank as announced (0 when launched alone)
    together: bool  # several processes started at once by torchrun or SLURM (not spawned by rank 0)
    job_id: str | None  # SLURM_JOB_ID or TORCHELASTIC_RUN_ID: what names a run all of them share
    inherited_dir: Path | None  # rank 0's run directory, for a rank Lightning started after it
    inherited_id: str | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Launch:
        env = os.environ if environ is None else environ
        together = _count(env, "WORLD_SIZE") > 1 or _count(env, "SLURM_NTASKS") > 1  # started at once
        job = env.get("SLURM_JOB_ID") or env.get("TORCHELASTIC_RUN_ID")
        inherited = env.get(RUN_DIR_ENV)
        return cls(
            rank=place(environ)[0],
            together=together,
            job_id=job if job and job != "none" else None,
            inherited_dir=Path(inherited) if inherited else None,
            inherited_id=env.get(RUN_ID_ENV) or None,
        )


@contextlib.contextmanager
def published(run_dir: Path, run_id: str) -> Iterator[None]:
    """While a run executes: its directory and id in the environment, for the ranks its Trainer launches."""
    os.environ[RUN_DIR_ENV], os.environ[RUN_ID_ENV] = str(run_dir), run_id
    try:
        yield
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
        os.environ.pop(RUN_ID_ENV, None)
