"""``lseg-pacl data prepare NAME ...``: converters that write a benchmark's files from its original release,
as the benchmark's reference code does, one module per dataset. Every converter writes atomically, resumes,
never replaces an output whose content differs, and returns a JSON summary (common.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from data_modules.prepare import ade847, coco20i, coco_object, pascal5i, pc459
from data_modules.prepare.common import InputError


@dataclass(frozen=True)
class Preparer:
    name: str
    options: dict[str, type]  # key=value options and their types
    required: tuple[str, ...]
    usage: str  # what follows ``lseg-pacl data prepare``
    run: Callable[..., dict]


def _preparer(module: ModuleType) -> Preparer:
    return Preparer(module.NAME, module.OPTIONS, module.REQUIRED, module.USAGE, module.run)


PREPARERS: dict[str, Preparer] = {
    p.name: p for p in map(_preparer, (coco_object, ade847, pc459, pascal5i, coco20i))
}

__all__ = ["PREPARERS", "Preparer", "InputError"]
