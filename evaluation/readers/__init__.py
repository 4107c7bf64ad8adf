"""One reader per evaluation dataset, each parsing the files a user has after downloading it.

from evaluation.readers import READERS, ReaderInput
result = READERS["utkface"](ReaderInput(root=Path("eval-data/utkface"), split="all"))
result.samples, result.skipped   # Sample(source, labels, box, ...), Counter of reasons
"""

from __future__ import annotations

from collections.abc import Callable

from evaluation.readers import emotic, fairface, fer2013, ferplus, kinetics400, lagenda, stanford40, utkface
from evaluation.readers.base import DataAbsent, ReaderInput, ReadResult, Sample

Reader = Callable[[ReaderInput], ReadResult]

READERS: dict[str, Reader] = {
    "emotic": emotic.read,
    "fairface": fairface.read,
    "fer2013": fer2013.read,
    "ferplus": ferplus.read,
    "kinetics400": kinetics400.read,
    "lagenda": lagenda.read,
    "stanford40": stanford40.read,
    "utkface": utkface.read,
}

__all__ = ["READERS", "DataAbsent", "ReadResult", "Reader", "ReaderInput", "Sample"]
