"""Card brands' issuer identification number (IIN) ranges and PAN lengths.

A digit run is only a card number when a brand issues numbers of that prefix *and* that
length (and it passes the Luhn check, see ``_pan``). This is what keeps order ids, 19-digit
epoch-nanosecond timestamps (no brand issues 19-digit numbers starting with 1) and other
Luhn-valid ids intact: about one Luhn-valid run in ten would otherwise be "a card".

Sources (public): the "Payment card number" article of the English Wikipedia, section
"Issuer identification number (IIN)", as of 2025, which compiles the brands' own published
ranges; Mastercard's 2-series announcement (2221-2720, 2016); Discover's IIN range list for
acquirers (6011, 622126-622925, 644-649, 65); JCB 3528-3589; Mir (NSPK) 2200-2204.

Left out on purpose, because their ranges would mask common non-card data: UATP (any
15-digit number starting with 1 - epoch timestamps in tens of microseconds), GPN (50, 56,
58, 60-63, whole first-digit blocks) and the broad "Maestro 56-69" reading; Maestro's
documented specific IINs are kept. 12-digit Maestro numbers are below the 13-digit floor.
"""

from __future__ import annotations

__all__ = ["BRANDS", "brand_of"]

# (brand, first prefix, last prefix (inclusive, same number of digits), allowed lengths)
BRANDS: tuple[tuple[str, int, int, frozenset[int]], ...] = (
    ("visa", 4, 4, frozenset({13, 16, 19})),
    ("mastercard", 51, 55, frozenset({16})),
    ("mastercard", 2221, 2720, frozenset({16})),
    ("amex", 34, 34, frozenset({15})),
    ("amex", 37, 37, frozenset({15})),
    ("discover", 6011, 6011, frozenset(range(16, 20))),
    ("discover", 644, 649, frozenset(range(16, 20))),
    ("discover", 65, 65, frozenset(range(16, 20))),
    ("discover", 622126, 622925, frozenset(range(16, 20))),
    ("jcb", 3528, 3589, frozenset(range(16, 20))),
    ("diners", 300, 305, frozenset(range(14, 20))),
    ("diners", 3095, 3095, frozenset(range(14, 20))),
    ("diners", 36, 36, frozenset(range(14, 20))),
    ("diners", 38, 39, frozenset(range(14, 20))),
    ("unionpay", 62, 62, frozenset(range(16, 20))),
    ("unionpay", 81, 81, frozenset(range(16, 20))),
    ("maestro", 5018, 5018, frozenset(range(13, 20))),
    ("maestro", 5020, 5020, frozenset(range(13, 20))),
    ("maestro", 5038, 5038, frozenset(range(13, 20))),
    ("maestro", 5893, 5893, frozenset(range(13, 20))),
    ("maestro", 6304, 6304, frozenset(range(13, 20))),
    ("maestro", 6759, 6759, frozenset(range(13, 20))),
    ("maestro", 6761, 6763, frozenset(range(13, 20))),
    ("rupay", 60, 60, frozenset({16})),
    ("rupay", 82, 82, frozenset({16})),
    ("rupay", 353, 353, frozenset({16})),
    ("rupay", 356, 356, frozenset({16})),
    ("rupay", 508, 508, frozenset({16})),
    ("mir", 2200, 2204, frozenset(range(16, 20))),
    ("verve", 506099, 506198, frozenset({16, 18, 19})),
    ("verve", 507865, 507964, frozenset({16, 18, 19})),
    ("verve", 650002, 650027, frozenset({16, 18, 19})),
    ("troy", 9792, 9792, frozenset({16})),
    ("dankort", 5019, 5019, frozenset({16})),
    ("interpayment", 636, 636, frozenset(range(16, 20))),
    ("instapayment", 637, 639, frozenset({16})),
    ("borica", 2205, 2205, frozenset({16})),
    ("humo", 9860, 9860, frozenset({16})),
    ("uzcard", 8600, 8600, frozenset({16})),
    ("t-union", 31, 31, frozenset({19})),
)


def _index() -> dict[str, tuple[tuple[str, int, int, int, frozenset[int]], ...]]:
    by_first: dict[str, list[tuple[str, int, int, int, frozenset[int]]]] = {}
    for brand, low, high, lengths in BRANDS:
        width = len(str(low))
        by_first.setdefault(str(low)[0], []).append((brand, width, low, high, lengths))
    return {first: tuple(rows) for first, rows in by_first.items()}


_BY_FIRST = _index()


def brand_of(digits: str) -> str | None:
    """The brand that issues the card number ``digits`` (ASCII digits), or None."""
    rows = _BY_FIRST.get(digits[:1])
    if rows is None:
        return None
    n = len(digits)
    for brand, width, low, high, lengths in rows:
        if n in lengths and low <= int(digits[:width]) <= high:
            return brand
    return None
