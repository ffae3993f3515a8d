"""The scrubber's settings: one frozen :class:`ScrubOptions`, and the process default.

Every function of :mod:`otelfin.scrub` takes ``options=``; without it, the default set by
:func:`configure` (``otelfin.configure()`` calls it with the service's settings) applies.
The options object also owns the verdict cache for key names, so a new set of secret names
never sees an old verdict.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Literal

from otelfin.scrub._fingerprint import Fingerprinter

__all__ = ["PanMask", "ScrubOptions", "configure", "current_options"]

PanMask = Literal["last4", "first6last4"]
_MASKS = ("last4", "first6last4")


def normalise_key(name: str) -> str:
    """A key name as the secret list compares it: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclasses.dataclass(frozen=True)
class ScrubOptions:
    """How the scrubber masks and what it treats as secret.

    Args:
        pan_mask: ``last4`` (default: ``XXXXXXXXXXXX1111``) or ``first6last4``
            (``411111XXXXXX1111``); PCI DSS allows at most the first six and last four.
        secret_keys: extra key names (compared without case, ``_``, ``-`` or ``.``) whose
            values are redacted, on top of the built-in list.
        keep_keys: whole key names that are never secrets, whatever words they hold
            (compared without case or separators: ``auth_code`` keeps ``auth_code`` and
            ``authCode``, not ``db_auth_code``). Card numbers in their values are still masked.
    """

    pan_mask: PanMask = "last4"
    secret_keys: frozenset[str] = frozenset()
    keep_keys: frozenset[str] = frozenset()
    #: Secret key for card fingerprints (``fp_`` + 16 hex after every masked number); None:
    #: no fingerprints. Never shown by ``repr``.
    fingerprint_key: str | bytes | None = dataclasses.field(default=None, repr=False)
    #: Made from ``fingerprint_key``: the function writing the tokens (None without a key).
    fingerprinter: Fingerprinter | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False, hash=False
    )
    # Verdicts for key names seen so far (bounded), owned by this options object.
    key_cache: dict[str, bool | str] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    # Span attribute values these options found clean (nothing to mask or redact), by how they
    # were scrubbed (text, URL, query); bounded, owned by this options object. Holds only
    # values that needed no change, so never anything that must not leave.
    clean_values: tuple[dict[str, None], dict[str, None], dict[str, None]] = dataclasses.field(
        default_factory=lambda: ({}, {}, {}), init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if self.pan_mask not in _MASKS:
            raise ValueError(f"pan mask {self.pan_mask!r} must be 'last4' or 'first6last4'")
        keys = self.secret_keys
        object.__setattr__(self, "secret_keys", _normalised(keys))
        object.__setattr__(self, "keep_keys", _normalised(self.keep_keys))
        if self.fingerprint_key is not None:
            object.__setattr__(self, "fingerprinter", Fingerprinter(self.fingerprint_key))


def _normalised(keys: Iterable[str] | str) -> frozenset[str]:
    if isinstance(keys, str):
        keys = (keys,)
    return frozenset(normalise_key(k) for k in keys) - {""}


#: The built-in options: masking on, the built-in secret names, no fingerprints. What every
#: channel falls back to when nothing else was set up (or setting up failed): fail closed.
DEFAULT = ScrubOptions()


class _State:
    __slots__ = ("current",)

    def __init__(self) -> None:
        #: The process default: what a scrub function without ``options=`` uses.
        self.current = DEFAULT


_state = _State()


def configure(options: ScrubOptions | None = None) -> ScrubOptions:
    """Make ``options`` the process default (None: back to the built-in defaults)."""
    if options is not None and not isinstance(options, ScrubOptions):
        raise TypeError(f"options must be a ScrubOptions, not {type(options).__name__}")
    chosen = options if options is not None else DEFAULT
    _state.current = chosen  # one reference, replaced whole: no lock needed
    return chosen


def current_options() -> ScrubOptions:
    """The process default :class:`ScrubOptions`."""
    return _state.current
