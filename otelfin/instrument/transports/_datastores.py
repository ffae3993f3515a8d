"""Settings the database rows of the transport table share: recording query parameters.

Statements are recorded by every database instrumentation (``db.statement``); their card-number
literals are masked by the span scrubber at export. Parameters (``db.statement.parameters``)
are not recorded unless ``configure(db_record_parameters=True)``; then they are recorded as the
drivers' instrumentations write them (the text of the parameter tuple) and scrubbed at export
like every string attribute: card numbers masked, but a password passed as a plain parameter is
text the scrubber cannot recognise, which is why it is off by default.

The value is read when a driver's row is switched on (at ``configure()``, or at the driver's
import when that comes later).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

__all__ = ["AsyncpgParametersInstrumentor", "parameter_options", "set_record_parameters"]


class _State:
    __slots__ = ("record_parameters",)

    def __init__(self) -> None:
        #: ``db_record_parameters`` as the tracing pillar last handed it over.
        self.record_parameters = False


_state = _State()


def set_record_parameters(on: bool) -> None:
    """Record query parameters on database spans from now on (``db_record_parameters``)."""
    _state.record_parameters = bool(on)


def parameter_options() -> Mapping[str, Any]:
    """``instrument()`` keywords of the dbapi-based rows (psycopg, psycopg2)."""
    return {"capture_parameters": _state.record_parameters}


class AsyncpgParametersInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Applies ``db_record_parameters`` to the official asyncpg instrumentor.

    The official ``AsyncPGInstrumentor`` takes ``capture_parameters`` in its constructor, not
    in ``instrument()``, and, being a singleton whose ``__init__`` runs on every
    ``AsyncPGInstrumentor()`` call, resets it to False each time it is looked up. This row comes
    after the official one and sets the flag on the instance the official row switched on.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """The asyncpg versions the official instrumentor supports."""
        return ("asyncpg >= 0.12.0",)

    def _instrument(self, **kwargs: Any) -> None:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        official = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
        official.capture_parameters = _state.record_parameters

    def _uninstrument(self, **kwargs: Any) -> None:
        return None
