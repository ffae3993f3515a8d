"""PyYAML's side of :mod:`otelfin.catalogue`: the loader that refuses aliases and caps nesting.

Apart from the catalogue so that PyYAML (~15 ms to import) loads only when a YAML file is
read: the packaged catalogue comes from its pre-parsed snapshot at start-up. Imports nothing of
otelfin (the catalogue imports this module on its first YAML file).
"""

from __future__ import annotations

import re
from typing import Any, cast

import yaml

__all__ = ["BAD_TEXT", "PACKAGED_LOADER", "Refused", "SafeCatalogueLoader", "loader"]

#: Characters a catalogue text cannot hold (control characters, lone surrogates); compiled here,
#: with the loader, since only a file being read needs it (~0.5 ms).
BAD_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")

#: libyaml's composer (C), for the packaged catalogue only; None without libyaml.
PACKAGED_LOADER: Any = getattr(yaml, "CSafeLoader", None)


class Refused(yaml.MarkedYAMLError):
    """A construct the catalogue format does not allow (an alias, too deep a nesting)."""


class SafeCatalogueLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and caps the nesting depth while composing."""

    def __init__(self, stream: str, max_depth: int) -> None:
        super().__init__(stream)
        self._depth = 0
        self._max_depth = max_depth

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        mark = cast("yaml.Mark", event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            # Refused, not expanded: shared nodes turn a few hundred bytes into an unbounded
            # value as soon as it is copied or shown, and a catalogue has nothing to share.
            raise Refused(
                problem=f"YAML aliases (*{event.anchor}) are not allowed in a catalogue",
                problem_mark=mark,
            )
        self._depth += 1
        try:
            if self._depth > self._max_depth:
                raise Refused(
                    problem=f"nesting deeper than {self._max_depth} levels",
                    problem_mark=mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def loader(text: str, *, max_depth: int, packaged: bool = False) -> yaml.SafeLoader:
    """A loader over ``text``: libyaml's for the packaged file (which the test-suite keeps
    clean: its alias and depth checks are for files otelfin does not ship) when it is there,
    else :class:`SafeCatalogueLoader` refusing nesting deeper than ``max_depth``."""
    if packaged and PACKAGED_LOADER is not None:
        return cast("yaml.SafeLoader", PACKAGED_LOADER(text))
    return SafeCatalogueLoader(text, max_depth)
