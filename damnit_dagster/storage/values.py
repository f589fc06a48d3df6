"""How values are stored in ``runs.sqlite``, as ``damnit.api`` decodes them: ``complex`` ->
16-byte ``'<dd'`` blob with ``summary_type='complex'``; ``ndarray`` -> ``.npy`` blob with
``summary_type='numpy'`` (``'trendline'`` kept); PNG thumbnails -> raw bytes; bool -> int;
NaN -> NULL; an error -> NULL value with ``attributes={"error": ..., "error_cls": ...}``."""
from __future__ import annotations

import io
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class ReducedValue:
    """One variable's row for a run: the summary ``value`` and its metadata."""

    value: Any
    max_diff: float | None = None
    summary_method: str = ""
    summary_type: str | None = None
    attributes: dict = field(default_factory=dict)

    @classmethod
    def error(cls, message: str, error_cls: str) -> ReducedValue:
        """The row of a variable that failed: NULL value, the error in ``attributes``."""
        return cls(None, attributes={"error": message, "error_cls": error_cls})

    @classmethod
    def cleared(cls) -> ReducedValue:
        """The row of a variable that now has no value (returned ``None``)."""
        return cls(None)


def complex2blob(value: complex) -> bytes:
    return struct.pack("<dd", value.real, value.imag)


def blob2complex(blob: bytes) -> complex:
    return complex(*struct.unpack("<dd", blob))


def numpy2blob(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def blob2numpy(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


def check_name(name: str) -> None:
    """Variable names are formatted into the views' SQL: only dotted identifiers."""
    if not (isinstance(name, str) and name
            and all(part.isidentifier() for part in name.split("."))):
        raise ValueError(f"Invalid variable name {name!r}: names must be Python "
                         "identifiers, optionally joined by dots")


def _nan_to_none(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def encode_row(reduced: ReducedValue) -> dict:
    """The ``run_variables`` columns (value and metadata) of one ``ReducedValue``."""
    value = reduced.value
    if isinstance(value, np.generic):
        value = value.item()
    row = {"max_diff": _nan_to_none(None if reduced.max_diff is None
                                    else float(reduced.max_diff)),
           "summary_method": reduced.summary_method,
           "summary_type": reduced.summary_type}
    if value is None:
        # DAMNIT's convention: no value means every metadata column is NULL too.
        row = dict.fromkeys(row)
    elif isinstance(value, bool):
        value = int(value)
    elif isinstance(value, complex):
        value, row["summary_type"] = complex2blob(value), "complex"
    elif isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("Object arrays cannot be stored in the database")
        value = numpy2blob(value)
        if not row["summary_type"]:
            row["summary_type"] = "numpy"
    elif isinstance(value, float):
        value = _nan_to_none(value)
    elif not isinstance(value, (int, str, bytes)):
        raise TypeError(f"Unsupported type for the database: {type(value).__name__}")
    row["value"] = value
    row["attributes"] = json.dumps(reduced.attributes) if reduced.attributes else None
    return row


def decode_value(value, summary_type):
    """The Python value of a stored summary (the inverse of :func:`encode_row`)."""
    if isinstance(value, bytes):
        if summary_type == "complex":
            return blob2complex(value)
        if summary_type in ("numpy", "trendline") or value.startswith(b"\x93NUMPY"):
            return blob2numpy(value)
    return value
