"""A run's saved state and bitwise comparison of two states, for the tests that stop a run and resume it."""

import torch


def state(run_dir):
    """The run's last.ckpt, tensors only."""
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def same(a, b) -> bool:
    """Equal bit for bit, tensors (dtype included), dicts, lists and plain values alike."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b
