"""CLI flags that default from the settings table, as ``configure()`` reads it.

A flag declared with :func:`setting_argument` is tied to one row of
:mod:`otelfin._settings`: left out, it takes that row's environment variable (parsed and checked
by the row's own parser, so ``OTELFIN_METRICS_SLO=abc`` is the same error here as in
``configure()``), else the row's default (or the command's own fallback). Given, the flag wins.
Its ``--help`` says which variable it defaults from, generated from the row.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from otelfin import _settings

__all__ = ["files_argument", "fill_from_settings", "setting_argument", "setting_value"]

_KEY = "_otelfin_settings"
_ROW_DEFAULT: Any = object()


def setting_argument(
    parser: argparse.ArgumentParser | Any,
    *flags: str,
    setting: str,
    help: str,
    fallback: Any = _ROW_DEFAULT,
    from_setting: Callable[[Any], Any] | None = None,
    parse_flag: bool = True,
    fallback_text: str | None = None,
    **kwargs: Any,
) -> argparse.Action:
    """Add ``flags`` to ``parser``, defaulting from the settings row ``setting``.

    ``from_setting`` turns the row's parsed value into the flag's (the catalogue row's text
    into a list of paths); ``fallback`` replaces the row's default when neither the flag nor
    the variable is given. ``parse_flag`` parses the flag's text with the row's parser too
    (in :func:`fill_from_settings`, so a bad value is exit 2 with the row's message), so both
    ways in accept the same values. Returns the argparse action.
    """
    row = _settings.by_name(setting)
    if row.env is None:
        raise ValueError(f"setting {setting!r} has no environment variable to default from")
    shown = fallback_text
    if shown is None:
        value = row.default if fallback is _ROW_DEFAULT else fallback
        shown = "none" if value in (None, (), []) else _text(value)
    action = parser.add_argument(
        *flags, default=None, help=f"{help} (default: ${row.env}, else {shown})", **kwargs
    )
    table = dict(parser.get_default(_KEY) or {})
    flag = flags[0] if parse_flag and kwargs.get("action") in (None, "store") else None
    table[action.dest] = (setting, fallback, from_setting, flag)
    parser.set_defaults(**{_KEY: table})
    return action


def files_argument(parser: argparse.ArgumentParser | Any, setting: str, help: str) -> None:
    """The positional ``FILE ...`` of a command reading files, defaulting to the one file the
    settings row ``setting`` names (none when it is unset); the destination is ``files``."""
    setting_argument(
        parser,
        "files",
        setting=setting,
        help=help,
        nargs="*",
        metavar="FILE",
        parse_flag=False,
        from_setting=lambda path: [path] if path else [],
    )


def setting_value(name: str) -> Any:
    """The value of the setting ``name`` as ``configure()`` reads it: its environment variable
    (parsed by the row, a bad value is its ``ValueError``), else the row's default."""
    row = _settings.by_name(name)
    raw = _settings.env_value(row.env) if row.env else None
    return row.parse(raw, str(row.env)) if raw is not None else row.default


def _text(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def fill_from_settings(args: argparse.Namespace) -> str | None:
    """Give every setting flag left out its variable's (or default) value, in place.

    Returns an error message naming the variable when its value is bad (the caller exits 2),
    else None. ``args.from_environment`` lists the flags that took a variable's value.
    """
    table: dict[str, tuple[str, Any, Callable[[Any], Any] | None, str | None]] = (
        getattr(args, _KEY, None) or {}
    )
    args.from_environment = []
    for dest, (setting, fallback, convert, flag) in table.items():
        row = _settings.by_name(setting)
        given = getattr(args, dest, None)
        if given not in (None, []):
            if flag is not None:  # the flag's text, checked by the row's parser as configure()
                try:
                    setattr(args, dest, row.parse(given, flag))
                except ValueError as exc:
                    return str(exc)
            continue
        raw = _settings.env_value(row.env) if row.env else None
        if raw is not None:
            try:
                value = row.parse(raw, str(row.env))
            except ValueError as exc:
                return str(exc)
            args.from_environment.append(dest)
        else:
            value = row.default if fallback is _ROW_DEFAULT else fallback
            if fallback is not _ROW_DEFAULT:
                setattr(args, dest, value)
                continue
        if convert is not None:
            try:
                value = convert(value)
            except ValueError as exc:
                return f"{row.env}: {exc}"
        setattr(args, dest, value)
    return None
