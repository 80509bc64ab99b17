"""Errors the user can fix: the CLI prints them as one message (no traceback) and exits with their code."""

from __future__ import annotations


class UserError(Exception):
    """Something the user must provide or change; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(UserError):
    """A bad experiment name, key or value."""

    exit_code = 2


class MissingInputError(UserError):
    """Weights or data that are not on this machine, or not in the layout expected; the message says what to
    provide and where (the file, the layout, the config key)."""

    exit_code = 3


class BadDataError(UserError):
    """Too large a share of the data was unreadable or malformed (the message names the worst files)."""

    exit_code = 4


class TrainingDivergedError(UserError):
    """The loss stayed non-finite for too many steps in a row."""

    exit_code = 5


class CheckpointError(UserError):
    """A checkpoint could not be written (the previous ones are intact) or is not safe to load: a file that
    does not match its manifest, or one that holds more than tensors."""

    exit_code = 6


class Preempted(UserError):
    """SIGTERM or SIGUSR1 arrived: the run saved its state at a step boundary and stopped; ``resume``
    continues it. The exit code is EX_TEMPFAIL ("try again"), which the SLURM script answers with a
    requeue."""

    exit_code = 75


class Stalled(UserError):
    """A wait ran past its bound (stall.*: a DataLoader batch, a collective, no progress at all): the run
    wrote every thread's stack, saved its state where that state was consistent, and stopped. The SLURM
    script requeues on this code as on preemption; ``resume`` continues."""

    exit_code = 76
