"""Result records: the dataclasses whose ``to_dict`` goes into a JSON report."""

from __future__ import annotations

from dataclasses import asdict


class Record:
    """Base of a result dataclass: :meth:`to_dict` returns its fields as plain values, nested
    dataclasses, lists and dicts copied recursively (:func:`dataclasses.asdict`)."""

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses
