"""What a format parser is given and gives back: the contract between the ingest loop and the parsers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ringfsck.errors import InputError
from ringfsck.ingest.inputs import OpenedInput
from ringfsck.ingest.rejects import RejectWriter
from ringfsck.store import Store


@dataclass
class ParseResult:
    format: str
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # why the references this file brings are incomplete


@dataclass
class ParseContext:
    """What a format parser needs to write one source."""

    store: Store
    source_id: str
    location: str
    rejects: RejectWriter
    allow_empty: bool
    verify_unchanged: Callable[[], None]  # raises if the input changed since it was opened

    def before_publishing(self, rows: int) -> None:
        """Call inside the part-writing block, so an empty file, or one that changed while read, never replaces a good part."""
        self.verify_unchanged()
        if rows == 0 and self.rejects.count == 0 and not self.allow_empty:
            raise InputError(f"{self.location}: empty input (no key rows)")


Parser = Callable[[OpenedInput, ParseContext], ParseResult]
