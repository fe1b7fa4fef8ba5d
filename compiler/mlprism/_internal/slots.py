"""Building many small frozen IR objects (Location, Edge) faster than their generated ``__init__``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any


def slot_setters(cls: type, names: Sequence[str]) -> tuple[Callable[[Any, Any], None], ...] | None:
    """The ``__set__`` of each slot of `cls`, in `names` order; None when they cannot stand in for ``__init__``.

    A frozen slotted dataclass's ``__init__`` sets each field through ``object.__setattr__``;
    ``object.__new__(cls)`` with each slot set directly gives the same object, two to three times
    faster. Only while `cls` has exactly the fields `names`, slots, and nothing that runs after
    ``__init__`` (else the caller uses `cls` itself).
    """
    if (tuple(f.name for f in dataclasses.fields(cls)) != tuple(names) or hasattr(cls, "__post_init__")
            or "__slots__" not in vars(cls)):
        return None
    return tuple(getattr(cls, n).__set__ for n in names)
