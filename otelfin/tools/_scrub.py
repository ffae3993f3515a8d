"""The scrubber's settings for offline tools: the same environment variables as
``configure()`` (mask, secret names, fingerprint key), so a card number a tool masks or reports
carries the same fingerprint token as in the service's own telemetry."""

from __future__ import annotations

from typing import Any

from otelfin import _settings, scrub

__all__ = ["use_environment_scrub_options"]


def use_environment_scrub_options() -> None:
    """Make the scrubber's default options the ones the environment's ``OTELFIN_*`` settings
    give. Raises ValueError (naming the variable) for a bad value."""
    values: dict[str, Any] = {}
    for name in scrub.OPTION_ROWS:
        row = _settings.by_name(name)
        raw = _settings.env_value(row.env) if row.env else None
        values[name] = row.parse(raw, str(row.env)) if raw is not None else row.default
    scrub.configure(scrub.options_from_values(values))
