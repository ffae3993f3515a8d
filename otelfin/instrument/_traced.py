"""``@traced``: a span (and, through the call observer, RED metrics) around any callable.

Why not ``wrapt.decorator`` here: wrapt's function wrapper costs ~445 ns a call around a plain
function (its C extension probes ``__self__`` on every call) against ~100 ns for a closure made
with ``functools.wraps``, and a wrapt proxy does not pickle by name. Decorating happens at
definition time, when the object is a plain function (or a classmethod/staticmethod object,
which we unwrap and rebuild), so a closure gives the same signature, ``inspect`` and pickling
behaviour at a quarter of the cost. wrapt is used where it earns its keep: patching existing
classes and post-import hooks (:mod:`otelfin.instrument._include`).

Why not ``tracer.start_as_current_span``: it is a generator-based context manager; starting the
span, attaching its context and ending it by hand does the same work without the generator
frame, which is what keeps ``@traced`` within 10% of a hand-written span while it also extracts
attributes, classifies error codes and feeds metrics.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Protocol, TypeVar, overload

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanKind,
    Status,
    StatusCode,
    TracerProvider,
)
from opentelemetry.util.types import AttributeValue

from otelfin import _internal, _outcome
from otelfin._errors import error_code_of
from otelfin.catalogue import Catalogue, CatalogueSlot
from otelfin.instrument._fastctx import REQUEST_KEY as _REQUEST_KEY
from otelfin.instrument._fastctx import SPAN_KEY as _SPAN_KEY
from otelfin.instrument._fastctx import (
    attach_context,
    context_with,
    context_with_request,
    current_context,
    detach,
    span_in,
)
from otelfin.instrument._spanwrite import add_text_event, set_text_attributes
from otelfin.scrub import ScrubOptions, scrub_value

__all__ = [
    "CallHook",
    "CallObserver",
    "TracedSpec",
    "call_observer",
    "set_call_observer",
    "spec_of",
    "traced",
]

F = TypeVar("F", bound=Callable[..., Any])

_TRACER_NAME = "otelfin"
# Kinds are tested against tuples, not sets: SpanKind is an Enum whose __hash__ runs in Python.
_ENTRY_KINDS = (SpanKind.SERVER, SpanKind.CONSUMER)
_OK = _outcome.OK
_MARK = "__otelfin_traced__"
#: Bounds of what failed calls remember (:func:`_classified`, :func:`_type_name`); past them,
#: lookups are computed each time instead.
_CODES_LIMIT = 1024
_TYPE_NAMES_LIMIT = 256
_KINDS = {
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}


class CallHook(Protocol):
    """Called once per finished call of one ``@traced`` function, while its span is current.

    ``error_code`` is the catalogue code of the exception (or None); ``exc`` the exception, if
    any; ``outcome`` is ``ok``, ``declined`` or ``error`` (see :mod:`otelfin._outcome`);
    ``entry`` is True when the call is an entry operation (it started a local trace, or it is a
    SERVER/CONSUMER span under no local SERVER/CONSUMER span) and False for an internal call.
    """

    def __call__(
        self,
        duration: float,
        attributes: Mapping[str, AttributeValue] | None,
        error_code: str | None,
        exc: BaseException | None,
        span: Span,
        outcome: str,
        entry: bool,
    ) -> None: ...


class CallObserver(Protocol):
    """Watches every ``@traced`` call (:mod:`otelfin.metrics` registers one for RED metrics).

    :meth:`bind` is asked once per decorated function (and again after the observer changes)
    for the hook that function's calls report to, so the observer can decide per function
    what it needs (label keys, bound metric children) and keep that state itself.
    """

    def bind(self, spec: TracedSpec) -> CallHook: ...


class _State:
    """What the tracing pillar was handed (the observer, the catalogue) and the tracer cache.

    Functions are decorated at import time, before ``configure()`` runs, so what it hands
    over is kept here, once for all of them; each wrapper holds this object in its closure.
    """

    __slots__ = ("catalogue", "codes", "observer", "scrub_options", "tracer", "type_names")

    def __init__(self) -> None:
        self.observer: CallObserver | None = None
        #: The catalogue ``configure()`` handed to the tracing pillar: ``use_catalogue``
        #: (called by ``install_pillar``) sets it, ``live_catalogue()`` is it (the packaged
        #: default before).
        self.catalogue = CatalogueSlot()
        #: The scrubber's options configure() handed over, for argument values turned into
        #: text (None: the process default).
        self.scrub_options: ScrubOptions | None = None
        #: ``(provider, tracer)``: the global provider's tracer as last resolved, read and
        #: written whole. Resolving ``get_tracer`` on every call costs microseconds, while
        #: tests and apps may swap the global provider at any time. (A function given its own
        #: provider keeps that provider's tracer in its closure.)
        self.tracer: tuple[object, trace.Tracer | None] = (None, None)
        #: ``(catalogue, {code: (outcome, attributes)})`` for the codes failed calls carried
        #: (:func:`_classified`), read and written whole; a new catalogue starts it afresh.
        self.codes: tuple[object, dict[str, tuple[str, dict[str, str]]]] = (None, {})
        #: Exception type -> its ``exception.type`` (:func:`_type_name`).
        self.type_names: dict[type[BaseException], str] = {}


_state = _State()
use_catalogue = _state.catalogue.use
live_catalogue = _state.catalogue.current


def set_call_observer(observer: CallObserver | None) -> CallObserver | None:
    """Install the call observer (None removes it); returns the previous one."""
    previous, _state.observer = _state.observer, observer
    return previous


def call_observer() -> CallObserver | None:
    """The installed call observer, or None."""
    return _state.observer


def use_scrub_options(options: ScrubOptions | None) -> None:
    """Scrub argument values with ``options`` (None: the process default); ``install_pillar``
    hands over the scrub pillar's."""
    _state.scrub_options = options


def _hook(spec: TracedSpec, observer: CallObserver) -> CallHook:
    bound = spec._bound  # one tuple, read and written whole: safe without a lock
    if bound is not None and bound[0] is observer:
        return bound[1]
    hook = observer.bind(spec)
    spec._bound = (observer, hook)
    return hook


def is_entry(parent: Context, kind: SpanKind) -> bool:
    """Whether a span of ``kind`` started under ``parent`` is an entry operation (a request).

    It is when it starts a local trace (no parent, or only a remote one), or when it is a
    SERVER/CONSUMER span whose local parent is not SERVER/CONSUMER itself (a handler under the
    framework's server span is not a second request).
    """
    span = span_in(parent)
    if span is None:
        return True
    context = span.get_span_context()
    if not context.is_valid or context.is_remote:
        return True
    return kind in _ENTRY_KINDS and getattr(span, "kind", None) not in _ENTRY_KINDS


def _open(
    spec: TracedSpec,
    span: Span,
    parent: Context,
    attrs: Mapping[str, AttributeValue],
    up: Any = None,
) -> tuple[Context, bool]:
    """The context to run the call in, and whether the call is an entry operation.

    The context also remembers the request's span (the entry span: this one, or the framework's
    SERVER/CONSUMER span above it), so that a ``payment.channel`` known only deep inside the
    request (an argument of an internal function) is put on the request's span too when that
    span has none: the request series are labelled by it, and the trace shows it at the top.
    """
    if up is None:
        up = span_in(parent)
        if up is None:
            return context_with(span, parent), True
    context = up.get_span_context()
    if not context.is_valid or context.is_remote:
        return context_with_request(span, parent, span), True
    up_kind = getattr(up, "kind", None)
    if spec.kind in _ENTRY_KINDS and up_kind not in _ENTRY_KINDS:
        # A request inside another local operation (a consumer under a poll loop): its calls
        # belong to it, not to whatever request the outer context names.
        return context_with_request(span, parent, span), True
    request = parent.get(_REQUEST_KEY)
    if request is not None:
        if spec.lifts:
            _lift(spec, request, attrs)
        return context_with(span, parent), False
    # The first call below the request's span: remember it for the calls further down. (A root
    # call leaves the key to its children, which keeps the common root-only case cheap.)
    if up_kind in _ENTRY_KINDS or _is_root(up):
        if spec.lifts:
            _lift(spec, up, attrs)
        return context_with_request(span, parent, up), False
    return context_with(span, parent), False


def _is_root(span: Any) -> bool:
    """True for an SDK span with no local parent (a non-recording span cannot tell: False)."""
    if not hasattr(span, "parent"):
        return False
    parent = span.parent
    return parent is None or bool(parent.is_remote)


def _lift(spec: TracedSpec, request: Any, attrs: Mapping[str, AttributeValue]) -> None:
    if not request.is_recording():
        return
    have = request.attributes
    for key in spec.lifts:
        value = attrs.get(key)
        if value is not None and (have is None or key not in have):
            request.set_attribute(key, value)


def _tracer(provider: TracerProvider) -> trace.Tracer:
    """The tracer of ``provider``, cached (see :attr:`_State.tracer`)."""
    cached, tracer = _state.tracer
    if provider is cached and tracer is not None:
        return tracer
    tracer = _new_tracer(provider)
    _state.tracer = (provider, tracer)
    return tracer


def _new_tracer(provider: TracerProvider) -> trace.Tracer:
    from otelfin._version import __version__

    return provider.get_tracer(_TRACER_NAME, __version__)


_Extractor = Callable[[tuple[Any, ...], dict[str, Any]], Any]


def _to_attribute(value: Any) -> AttributeValue | None:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, (str, bool, int, float)) for v in value
    ):
        return tuple(value)
    try:
        # Secret-named entries of a dict (or dataclass) are redacted before it becomes text:
        # once flattened into one string, the export-time scrubber can only find card numbers.
        return str(scrub_value(value, options=_state.scrub_options))
    except Exception:  # an argument's broken __str__ must not cost the span
        return f"<unprintable {type(value).__name__}>"


def _param_extractor(func: Callable[..., Any], attr: str, param: str) -> _Extractor:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        sig = None
    index: int | None = None
    default: Any = None
    if sig is not None:
        params = list(sig.parameters.values())
        found = next((p for p in params if p.name == param), None)
        if found is None or found.kind in (found.VAR_POSITIONAL, found.VAR_KEYWORD):
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                raise ValueError(
                    f"@traced on {_display_name(func)}: attribute {attr!r} names parameter "
                    f"{param!r}, which the function does not have; use static_attributes= "
                    "for a fixed value"
                )
        else:
            if found.kind in (found.POSITIONAL_ONLY, found.POSITIONAL_OR_KEYWORD):
                index = params.index(found)
            if found.default is not found.empty:
                default = found.default

    def extract(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if param in kwargs:
            return kwargs[param]
        if index is not None and index < len(args):
            return args[index]
        return default

    return extract


@dataclass(eq=False)
class TracedSpec:
    """Everything ``@traced`` decided at decoration time for one function."""

    name: str
    kind: SpanKind
    static: dict[str, AttributeValue]
    extractors: tuple[tuple[str, _Extractor], ...]
    record_args: bool
    tracer_provider: TracerProvider | None
    func: Callable[..., Any]
    #: Attributes put on the request's span when it lacks them (``channel``, ``*.channel``).
    lifts: tuple[str, ...] = ()
    #: The call observer this function last bound to, and the hook it returned.
    _bound: tuple[CallObserver, CallHook] | None = field(default=None, repr=False)

    @property
    def dynamic(self) -> bool:
        """True when attributes depend on the call's arguments."""
        return bool(self.extractors) or self.record_args

    def attributes(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, AttributeValue]:
        attrs = dict(self.static)
        for attr, extract in self.extractors:
            try:
                value = _to_attribute(extract(args, kwargs))
            except Exception as exc:  # a user callable failed: contained
                _internal.report(f"traced.attribute[{self.name}:{attr}]", exc)
                continue
            if value is not None:
                attrs[attr] = value
        if self.record_args:
            self._record_args(attrs, args, kwargs)
        return attrs

    def _record_args(
        self, attrs: dict[str, AttributeValue], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            bound = inspect.signature(self.func).bind_partial(*args, **kwargs)
        except (TypeError, ValueError):
            return
        for name, value in bound.arguments.items():
            if name in ("self", "cls"):
                continue
            converted = _to_attribute(value)
            if converted is not None:
                attrs[f"code.arg.{name}"] = converted


#: What a :func:`_starter`'s ``begin`` returns for a started call: its span, the span's
#: attributes, the token that restores the caller's context (None once restored), whether
#: the call is an entry operation, and when the call started.
_Started = tuple[Span, dict[str, AttributeValue], Any, bool, float]
_Begin = Callable[[tuple[Any, ...], dict[str, Any]], _Started | None]


def _starter(spec: TracedSpec) -> _Begin:
    """``begin(args, kwargs)`` for one decorated function: start the call's span as a child of
    the current context and make it current; None when starting failed (contained and
    reported: the call then runs untraced).

    Every kind of function (plain, coroutine, generator) starts through it. What the spec
    decided is read into the closure once, here; each helper call on this path costs ~60 ns,
    so the common case is spelled out inline.
    """
    name, kind, provider, dynamic = spec.name, spec.kind, spec.tracer_provider, spec.dynamic
    static, state = spec.static, _state
    own: list[trace.Tracer | None] = [None]  # the tracer of a provider given to @traced

    def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Started | None:
        try:
            attrs = spec.attributes(args, kwargs) if dynamic else static
            parent = current_context()
            if provider is not None:
                tracer = own[0]
                if tracer is None:
                    tracer = own[0] = _tracer(provider)
            else:
                # trace.get_tracer_provider() consults os.environ on every call while no
                # provider is set (~0.6 us); the module global answers at once when one is.
                current = getattr(trace, "_TRACER_PROVIDER", None) or trace.get_tracer_provider()
                cached, tracer = state.tracer
                if current is not cached or tracer is None:
                    tracer = _tracer(current)
            span = tracer.start_span(name, parent, kind, attrs)
            up = parent.get(_SPAN_KEY)
            if up is None:  # a root call: the common case, context_with(span, parent) inline
                values = parent.copy()
                values[_SPAN_KEY] = span
                token = attach_context(Context(values))
                entry = True
            else:
                context, entry = _open(spec, span, parent, attrs, up)
                token = attach_context(context)
        except Exception as exc:
            _internal.report("traced.start", exc)
            return None
        return span, attrs, token, entry, perf_counter()

    return begin


def _type_name(exc_type: type[BaseException]) -> str:
    """``exception.type`` of a failed call: the qualified name, without ``builtins.``."""
    name = _state.type_names.get(exc_type)
    if name is None:
        name = (
            exc_type.__qualname__
            if exc_type.__module__ == "builtins"
            else f"{exc_type.__module__}.{exc_type.__qualname__}"
        )
        if len(_state.type_names) < _TYPE_NAMES_LIMIT:
            _state.type_names[exc_type] = name
    return name


def _classified(code: str, catalogue: Catalogue) -> tuple[str, dict[str, str]]:
    """The outcome of ``code`` in ``catalogue`` and the span attributes that say it
    (``error.type``, ``otelfin.error_code``, ``otelfin.outcome``, in that order).

    Remembered per registered code of the live catalogue (frozen: the answer cannot change
    while it is the one in use), so a repeated code skips the catalogue's ``Mapping`` reads and
    a new dict. Only codes the catalogue holds are kept: an unregistered code is whatever
    string an exception carries, and a process-wide table holds nothing but catalogue codes.
    The returned dict is shared: never write to it.
    """
    held, known = _state.codes  # one tuple, read and written whole: safe without a lock
    if held is catalogue:
        found = known.get(code)
        if found is not None:
            return found
    else:
        known = {}
        _state.codes = (catalogue, known)
    outcome = _outcome.of_code(code, catalogue)
    found = (outcome, {"error.type": code, "otelfin.error_code": code, _outcome.ATTRIBUTE: outcome})
    if code in catalogue and len(known) < _CODES_LIMIT:
        known[code] = found
    return found


def _record_error(
    spec: TracedSpec,
    span: Span,
    attrs: dict[str, AttributeValue],
    exc: BaseException,
    t0: float,
    entry: bool,
    observer: CallObserver | None,
) -> None:
    """Record the exception and its outcome on the span, feed the observer.

    A declined outcome (a code the catalogue calls a business outcome) keeps the span's status
    UNSET; anything else sets ERROR. Contained by the caller.
    """
    code = error_code_of(exc)
    items: dict[str, str] | None = None
    if code is None:
        outcome = _outcome.ERROR
    else:
        outcome, items = _classified(code, _state.catalogue.current())
        if not entry:
            request = current_context().get(_REQUEST_KEY)
            if request is not None and request is not span:
                _outcome.note_code(request, code)
    if span.is_recording():
        exc_type = type(exc)
        type_name = _type_name(exc_type)
        if items is not None:
            try:
                extra = getattr(exc, "attributes", None)
            except Exception as err:  # a hostile attributes property: the span still fails
                _internal.report("traced.error_attributes", err)
                extra = None
            if isinstance(extra, dict) and extra:
                _record_error_attributes(span, items, extra)
            else:
                # The decline's common case: three attributes, one write.
                set_text_attributes(span, items)
        else:
            span.set_attribute("error.type", type_name)
            span.set_attribute(_outcome.ATTRIBUTE, outcome)
        try:
            message = str(exc)
            unprintable = False
        except Exception:  # a broken __str__: the SDK's record_exception would raise too
            message = f"<unprintable {type_name}>"
            unprintable = True
        if unprintable or outcome == _outcome.DECLINED:
            # An expected business outcome (a decline): record what happened, skip the
            # stack trace. Formatting it is most of the cost of an exception on a span.
            # (An unprintable exception takes this path too: record_exception calls str().)
            add_text_event(
                span, "exception", {"exception.type": type_name, "exception.message": message}
            )
        else:
            span.record_exception(exc)
        if outcome == _outcome.ERROR:
            span.set_status(Status(StatusCode.ERROR, f"{exc_type.__name__}: {message}"))
    if observer is not None:
        _hook(spec, observer)(perf_counter() - t0, attrs, code, exc, span, outcome, entry)


def _record_error_attributes(span: Span, items: dict[str, str], extra: dict[Any, Any]) -> None:
    """The code's attributes with the exception's own (``otelfin.error.<key>``, scrubbed on
    export) between them and the outcome, which is set last as on every failed span."""
    span.set_attribute("error.type", items["error.type"])
    span.set_attribute("otelfin.error_code", items["otelfin.error_code"])
    try:
        for key, value in extra.items():
            converted = _to_attribute(value)
            if converted is not None:
                span.set_attribute(f"otelfin.error.{key}", converted)
    except Exception as err:  # a hostile mapping: the span still fails
        _internal.report("traced.error_attributes", err)
    span.set_attribute(_outcome.ATTRIBUTE, items[_outcome.ATTRIBUTE])


def _done(spec: TracedSpec, started: _Started, exc: BaseException | None = None) -> None:
    """The call returned (or a generator ended), or raised ``exc``: record the outcome,
    report the call to the observer, end the span and restore the caller's context.

    One function for every way a call ends, spelled out: it runs once per call.
    """
    span, attrs, token, entry, t0 = started
    observer = _state.observer
    if exc is not None:
        try:
            _record_error(spec, span, attrs, exc, t0, entry, observer)
        except Exception as err:
            _internal.report("traced.record_error", err)
    elif observer is not None:
        try:
            _hook(spec, observer)(perf_counter() - t0, attrs, None, None, span, _OK, entry)
        except Exception as err:
            _internal.report("traced.observer", err)
    if type(span) is not NonRecordingSpan:  # whose end() does nothing (unsampled): no call
        try:
            span.end()
        except Exception as err:  # a span processor raised in on_end
            _internal.report("traced.end", err)
    if token is not None:
        try:
            detach(token)
        except Exception as err:  # a token from another context: never the host's problem
            _internal.report("traced.detach", err)


def _wrap_function(func: Callable[..., Any], spec: TracedSpec, begin: _Begin) -> Callable[..., Any]:
    """The span covers the call."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = begin(args, kwargs)
        if started is None:
            return func(*args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            _done(spec, started, exc)
            raise
        _done(spec, started)
        return result

    return wrapper


def _wrap_coroutine(
    func: Callable[..., Any], spec: TracedSpec, begin: _Begin
) -> Callable[..., Any]:
    """The span covers the coroutine from its first step to its result."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = begin(args, kwargs)
        if started is None:
            return await func(*args, **kwargs)
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            _done(spec, started, exc)
            raise
        _done(spec, started)
        return result

    return wrapper


class _Run:
    """One traced generator run: its started call (:func:`_starter`), the span's context, and
    what the consumer sent or threw in last.

    Both generator drivers share it. The inner generator is driven step by step with the
    span's context attached only while it runs (:meth:`enter`/:meth:`leave`): attaching once
    and yielding would leak the span into the consumer's context. A run starts entered.
    """

    __slots__ = ("ctx", "sent", "spec", "started", "thrown", "token")

    def __init__(self, spec: TracedSpec, started: _Started) -> None:
        self.spec = spec
        self.ctx = current_context()
        self.token: Any = started[2]
        # The context is restored step by step from here on, never by _done.
        self.started: _Started = (started[0], started[1], None, started[3], started[4])
        self.sent: Any = None
        self.thrown: BaseException | None = None

    def enter(self) -> None:
        self.token = attach_context(self.ctx)

    def leave(self) -> None:
        detach(self.token)

    def take_thrown(self) -> BaseException:
        """What the consumer threw in, to throw into the inner generator (once)."""
        thrown, self.thrown = self.thrown, None
        assert thrown is not None
        return thrown

    def end(self, exc: BaseException | None) -> None:
        """Exhausted, closed early by the consumer (``GeneratorExit``: not an error), or
        failed with ``exc``."""
        _done(self.spec, self.started, None if isinstance(exc, GeneratorExit) else exc)


def _wrap_generator(
    func: Callable[..., Any], spec: TracedSpec, begin: _Begin
) -> Callable[..., Any]:
    """The span covers the whole iteration (see :class:`_Run`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = begin(args, kwargs)
        if started is None:
            return (yield from func(*args, **kwargs))
        run = _Run(spec, started)
        try:
            gen = func(*args, **kwargs)
            while True:
                try:
                    item = (
                        gen.send(run.sent) if run.thrown is None else gen.throw(run.take_thrown())
                    )
                except StopIteration as stop:
                    result = stop.value
                    break
                finally:
                    run.leave()
                try:
                    run.sent = yield item
                except GeneratorExit:
                    run.enter()
                    try:
                        gen.close()
                    finally:
                        run.leave()
                    raise
                except BaseException as exc:
                    run.thrown = exc
                run.enter()
        except BaseException as exc:
            run.end(exc)
            raise
        run.end(None)
        return result

    return wrapper


def _wrap_async_generator(
    func: Callable[..., Any], spec: TracedSpec, begin: _Begin
) -> Callable[..., Any]:
    """Like :func:`_wrap_generator`, for ``async def ... yield``."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = begin(args, kwargs)
        if started is None:
            async for item in func(*args, **kwargs):
                yield item
            return
        run = _Run(spec, started)
        try:
            agen = func(*args, **kwargs)
            while True:
                try:
                    if run.thrown is None:
                        item = await agen.asend(run.sent)
                    else:
                        item = await agen.athrow(run.take_thrown())
                except StopAsyncIteration:
                    break
                finally:
                    run.leave()
                try:
                    run.sent = yield item
                except GeneratorExit:
                    run.enter()
                    try:
                        await agen.aclose()
                    finally:
                        run.leave()
                    raise
                except BaseException as exc:
                    run.thrown = exc
                run.enter()
        except BaseException as exc:
            run.end(exc)
            raise
        run.end(None)

    return wrapper


def _display_name(func: Any) -> str:
    """``__qualname__``, or for partials and callable objects the best name there is."""
    qualname = getattr(func, "__qualname__", None)
    if isinstance(qualname, str):
        return qualname
    inner = getattr(func, "func", None)  # functools.partial
    if inner is not None and inner is not func:
        return _display_name(inner)
    return type(func).__qualname__


def _callable_extractor(callback: Callable[..., Any]) -> _Extractor:
    def extract(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return callback(*args, **kwargs)

    return extract


def _make_spec(
    func: Callable[..., Any],
    name: str | None,
    kind: SpanKind | str,
    attributes: Mapping[str, str | int | float | bool | Callable[..., Any]] | None,
    static_attributes: Mapping[str, AttributeValue] | None,
    record_args: bool,
    tracer_provider: TracerProvider | None,
) -> TracedSpec:
    if isinstance(kind, str):
        try:
            kind = _KINDS[kind.lower()]
        except KeyError:
            raise ValueError(
                f"@traced: unknown span kind {kind!r} (expected one of {', '.join(_KINDS)})"
            ) from None
    # No code.function/code.namespace by default: each attribute costs ~1.5 us on a sampled
    # span (the SDK validates and copies it) and the span name already is the qualname.
    static: dict[str, AttributeValue] = {}
    extractors: list[tuple[str, _Extractor]] = []
    for attr, source in (attributes or {}).items():
        if isinstance(source, str):
            extractors.append((attr, _param_extractor(func, attr, source)))
        elif callable(source):
            extractors.append((attr, _callable_extractor(source)))
        elif isinstance(source, (bool, int, float)):
            static[attr] = source
        else:
            raise TypeError(
                f"@traced on {_display_name(func)}: attribute {attr!r} must name a parameter, "
                f"be a callable or a number, not {type(source).__name__}"
            )
    for attr, value in (static_attributes or {}).items():
        converted = _to_attribute(value)
        if converted is not None:
            static[attr] = converted
    # Every span starts as ``ok`` (one more entry in a dict the SDK copies anyway, where a
    # set_attribute at the end would cost ~1.5 us a call); a failure overwrites it.
    static[_outcome.ATTRIBUTE] = _OK
    lifts = tuple(
        key
        for key in (*static, *(attr for attr, _ in extractors))
        if key == "channel" or key.endswith(".channel")
    )
    name = name or _display_name(func)
    return TracedSpec(
        name, kind, static, tuple(extractors), record_args, tracer_provider, func, lifts
    )


def _decorate(func: Any, options: dict[str, Any]) -> Any:
    if isinstance(func, (classmethod, staticmethod)):
        return type(func)(_decorate(func.__func__, options))
    if getattr(func, _MARK, None) is not None:
        return func  # already traced: never two spans for one call
    if not callable(func):
        raise TypeError(f"@traced needs a function, got {type(func).__name__}")
    spec = _make_spec(func, **options)
    if inspect.isasyncgenfunction(func):
        wrap = _wrap_async_generator
    elif inspect.iscoroutinefunction(func):
        wrap = _wrap_coroutine
    elif inspect.isgeneratorfunction(func):
        wrap = _wrap_generator
    else:
        wrap = _wrap_function
    wrapper = wrap(func, spec, _starter(spec))
    setattr(wrapper, _MARK, spec)
    return wrapper


@overload
def traced(func: F, /) -> F: ...


@overload
def traced(
    func: None = None,
    /,
    *,
    name: str | None = None,
    kind: SpanKind | str = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | float | bool | Callable[..., Any]] | None = None,
    static_attributes: Mapping[str, AttributeValue] | None = None,
    record_args: bool = False,
    tracer_provider: TracerProvider | None = None,
) -> Callable[[F], F]: ...


def traced(
    func: Any = None,
    /,
    *,
    name: str | None = None,
    kind: SpanKind | str = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | float | bool | Callable[..., Any]] | None = None,
    static_attributes: Mapping[str, AttributeValue] | None = None,
    record_args: bool = False,
    tracer_provider: TracerProvider | None = None,
) -> Any:
    """Trace every call of a function, method, coroutine, generator or async generator.

    Use bare (``@traced``) or with options (``@traced(name=..., attributes=...)``).

    Args:
        name: span name; defaults to the function's ``__qualname__``.
        kind: a :class:`~opentelemetry.trace.SpanKind` or its name (``"server"``, ...).
        attributes: span attributes taken from each call. A string value names a parameter
            (``{"payment.channel": "channel"}``); a callable is called with the call's
            arguments; a number or bool is a fixed value. Naming a parameter the function does
            not have is a ``ValueError`` at decoration time.
        static_attributes: fixed span attributes.
        record_args: record every argument as ``code.arg.<name>`` (scrubbed on export).
        tracer_provider: defaults to the global provider, resolved at call time.

    Every span carries ``otelfin.outcome``: ``ok``, ``declined`` or ``error``. Exceptions are
    recorded on the span and re-raised unchanged. An exception with an ``error_code`` (such as
    :class:`otelfin.OtelfinError`) puts the code on the span as ``error.type`` and
    ``otelfin.error_code``; a code the catalogue calls a business outcome (severity
    ``info``/``warning``, or ``outcome: declined``) makes the call ``declined``: status stays
    UNSET and no stack trace is formatted. Any other exception is ``error``, status ERROR.
    """
    options = {
        "name": name,
        "kind": kind,
        "attributes": attributes,
        "static_attributes": static_attributes,
        "record_args": record_args,
        "tracer_provider": tracer_provider,
    }
    if func is not None:
        return _decorate(func, options)
    return lambda f: _decorate(f, options)


def spec_of(func: Any) -> TracedSpec | None:
    """The :class:`TracedSpec` of a ``@traced`` function, or None."""
    return getattr(func, _MARK, None)
