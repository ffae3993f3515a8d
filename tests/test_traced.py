"""@traced: every function kind, options, nesting and exceptions."""

from __future__ import annotations

import asyncio
import inspect
import pickle
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import otelfin
from otelfin import OtelfinError, traced
from otelfin.instrument import spec_of


@traced
def plain(x: int, y: int = 2) -> int:
    """A module-level function, so pickling by name can be checked."""
    return x + y


class Service:
    factor = 3

    @traced
    def method(self, amount: int) -> int:
        return amount * self.factor

    @traced
    @classmethod
    def klass(cls, amount: int) -> int:
        return amount * cls.factor

    @classmethod
    @traced
    def klass_inner(cls, amount: int) -> int:
        return amount * cls.factor

    @traced
    @staticmethod
    def static(amount: int) -> int:
        return amount + 1


def by_name(exporter: InMemorySpanExporter) -> dict[str, list]:
    out: dict[str, list] = {}
    for span in exporter.get_finished_spans():
        out.setdefault(span.name, []).append(span)
    return out


def test_sync_function_result_and_span(spans: InMemorySpanExporter) -> None:
    """The result is unchanged and one span with code attributes is exported."""
    assert plain(1) == 3
    (span,) = spans.get_finished_spans()
    assert span.name == "plain"
    assert dict(span.attributes) == {"otelfin.outcome": "ok"}
    assert span.status.status_code is StatusCode.UNSET


def test_signature_inspect_and_pickle_survive() -> None:
    """Decorating keeps the signature, docstring, coroutine-ness and pickling by name."""
    assert str(inspect.signature(plain)) == "(x: 'int', y: 'int' = 2) -> 'int'"
    assert plain.__doc__ and "pickling" in plain.__doc__
    assert pickle.loads(pickle.dumps(plain)) is plain

    @traced
    async def coro() -> None:
        return None

    assert inspect.iscoroutinefunction(coro)
    assert spec_of(plain) is not None


def test_methods_classmethods_staticmethods(spans: InMemorySpanExporter) -> None:
    """Instance, class and static methods work in either decorator order."""
    svc = Service()
    assert svc.method(2) == 6
    assert Service.klass(2) == 6
    assert svc.klass(2) == 6
    assert Service.klass_inner(3) == 9
    assert Service.static(1) == 2
    assert svc.static(1) == 2
    names = [s.name for s in spans.get_finished_spans()]
    assert names == [
        "Service.method",
        "Service.klass",
        "Service.klass",
        "Service.klass_inner",
        "Service.static",
        "Service.static",
    ]


async def test_async_function(spans: InMemorySpanExporter) -> None:
    """A coroutine's span covers the awaited work and its child spans."""

    @traced
    async def child() -> int:
        await asyncio.sleep(0)
        return 5

    @traced
    async def parent() -> int:
        await asyncio.sleep(0.01)
        return await child() + 1

    assert await parent() == 6
    found = by_name(spans)
    (p,) = found["test_async_function.<locals>.parent"]
    (c,) = found["test_async_function.<locals>.child"]
    assert c.parent is not None and c.parent.span_id == p.context.span_id
    assert p.end_time - p.start_time >= 10_000_000


def test_generator_span_covers_iteration(spans: InMemorySpanExporter) -> None:
    """The span starts at the first next() and ends when the generator is exhausted."""

    @traced
    def child() -> None:
        pass

    @traced
    def numbers(n: int) -> Iterator[int]:
        for i in range(n):
            child()
            yield i

    gen = numbers(3)
    assert inspect.isgenerator(gen)
    assert spans.get_finished_spans() == ()
    assert next(gen) == 0
    # While suspended, the generator's span is not the consumer's current span.
    assert not trace.get_current_span().get_span_context().is_valid
    assert list(gen) == [1, 2]
    found = by_name(spans)
    (g,) = found["test_generator_span_covers_iteration.<locals>.numbers"]
    children = found["test_generator_span_covers_iteration.<locals>.child"]
    assert len(children) == 3
    assert all(c.parent.span_id == g.context.span_id for c in children)


def test_generator_send_throw_close_and_return(spans: InMemorySpanExporter) -> None:
    """send(), throw() and close() reach the inner generator; its return value survives."""
    seen: list[object] = []

    @traced
    def echo() -> Iterator[int]:
        try:
            while True:
                try:
                    got = yield len(seen)
                    seen.append(got)
                except KeyError as exc:
                    seen.append(("caught", exc.args[0]))
        finally:
            seen.append("closed")

    gen = echo()
    assert next(gen) == 0
    assert gen.send("a") == 1
    assert gen.throw(KeyError("k")) == 2
    gen.close()
    assert seen == ["a", ("caught", "k"), "closed"]
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET

    @traced
    def returns() -> Iterator[int]:
        yield 1
        return 42

    def delegate() -> Iterator[int]:
        result = yield from returns()
        seen.append(result)

    list(delegate())
    assert seen[-1] == 42


def test_generator_error_marks_span(spans: InMemorySpanExporter) -> None:
    """An exception raised mid-iteration propagates unchanged and fails the span."""
    boom = ValueError("boom")

    @traced
    def gen() -> Iterator[int]:
        yield 1
        raise boom

    it = gen()
    next(it)
    with pytest.raises(ValueError) as info:
        next(it)
    assert info.value is boom
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR


async def test_async_generator(spans: InMemorySpanExporter) -> None:
    """An async generator's span covers the iteration; early aclose() is not an error."""

    @traced
    async def ticks(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    assert inspect.isasyncgenfunction(ticks)
    assert [i async for i in ticks(3)] == [0, 1, 2]
    agen = ticks(10)
    assert await agen.__anext__() == 0
    assert not trace.get_current_span().get_span_context().is_valid
    await agen.aclose()
    finished = spans.get_finished_spans()
    assert len(finished) == 2
    assert all(s.status.status_code is StatusCode.UNSET for s in finished)


def test_nesting_builds_parent_chain(spans: InMemorySpanExporter) -> None:
    """Nested calls produce a parent chain within one trace."""

    @traced(name="inner")
    def inner() -> None:
        pass

    @traced(name="middle")
    def middle() -> None:
        inner()

    @traced(name="outer", kind="server")
    def outer() -> None:
        middle()

    outer()
    found = {s.name: s for s in spans.get_finished_spans()}
    assert found["inner"].parent.span_id == found["middle"].context.span_id
    assert found["middle"].parent.span_id == found["outer"].context.span_id
    assert found["outer"].parent is None
    assert found["outer"].kind is SpanKind.SERVER
    assert len({s.context.trace_id for s in found.values()}) == 1


def test_attributes_from_arguments_callables_and_static(spans: InMemorySpanExporter) -> None:
    """Attributes come from parameters (positional, keyword, default), callables and constants."""

    @traced(
        attributes={
            "payment.channel": "channel",
            "payment.amount": "amount",
            "payment.big": lambda amount, channel="web": amount > 100,
            "payment.version": 2,
        },
        static_attributes={"payment.scheme": "visa"},
    )
    def pay(amount: float, channel: str = "web") -> None:
        pass

    pay(5.0)
    pay(500.0, "pos")
    pay(amount=7.5, channel="moto")
    a, b, c = (dict(s.attributes) for s in spans.get_finished_spans())
    assert (a["payment.channel"], a["payment.amount"], a["payment.big"]) == ("web", 5.0, False)
    assert (b["payment.channel"], b["payment.big"]) == ("pos", True)
    assert c["payment.channel"] == "moto"
    assert a["payment.version"] == 2 and a["payment.scheme"] == "visa"


def test_unknown_parameter_is_rejected_at_decoration() -> None:
    """A typo in a parameter name fails when decorating, not silently at run time."""
    with pytest.raises(ValueError, match="chanel"):

        @traced(attributes={"payment.channel": "chanel"})
        def pay(amount: float, channel: str) -> None:
            pass

    with pytest.raises(ValueError, match="unknown span kind"):
        traced(kind="sideways")(lambda: None)


def test_record_args(spans: InMemorySpanExporter) -> None:
    """record_args=True records arguments (other than self) as code.arg.*; off by default."""

    @traced(record_args=True)
    def pay(amount: float, meta: dict[str, int]) -> None:
        pass

    pay(3.5, {"a": 1})
    plain(1)
    recorded, default = spans.get_finished_spans()
    assert recorded.attributes["code.arg.amount"] == 3.5
    assert recorded.attributes["code.arg.meta"] == "{'a': 1}"
    assert not any(k.startswith("code.arg.") for k in default.attributes)


def test_exception_same_object_and_traceback(spans: InMemorySpanExporter) -> None:
    """An unexpected exception is recorded with a stack trace and re-raised as the same object."""
    boom = RuntimeError("ledger down")

    @traced
    def fail() -> None:
        raise boom

    with pytest.raises(RuntimeError) as info:
        fail()
    assert info.value is boom
    assert any(frame.name == "fail" for frame in info.traceback)
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "RuntimeError"
    (event,) = span.events
    assert event.name == "exception"
    assert "ledger down" in event.attributes["exception.message"]
    assert "Traceback" in event.attributes["exception.stacktrace"]


def test_business_error_is_cheap_and_coded(spans: InMemorySpanExporter) -> None:
    """A catalogued warning-severity code is a decline: coded, status UNSET, no stack trace."""

    @traced
    def pay() -> None:
        raise OtelfinError("PAY-012", "Insufficient balance", account_tier="gold")

    with pytest.raises(OtelfinError) as info:
        pay()
    assert info.value.code == "PAY-012"
    (span,) = spans.get_finished_spans()
    assert span.attributes["error.type"] == "PAY-012"
    assert span.attributes["otelfin.error_code"] == "PAY-012"
    assert span.attributes["otelfin.error.account_tier"] == "gold"
    assert span.attributes["otelfin.outcome"] == "declined"
    assert span.status.status_code is StatusCode.UNSET
    (event,) = span.events
    assert event.attributes["exception.message"] == "PAY-012: Insufficient balance"
    assert "exception.stacktrace" not in event.attributes


def test_fault_code_keeps_stack_trace(spans: InMemorySpanExporter) -> None:
    """An error-severity code (a fault, not a decline) still records the stack trace."""

    class LedgerError(Exception):
        error_code = "DB-003"

    @traced
    def post() -> None:
        raise LedgerError("deadlock")

    with pytest.raises(LedgerError):
        post()
    (span,) = spans.get_finished_spans()
    assert span.attributes["otelfin.error_code"] == "DB-003"
    assert "exception.stacktrace" in span.events[0].attributes


def test_unregistered_code_is_treated_as_fault(spans: InMemorySpanExporter) -> None:
    """A code missing from the catalogue still lands on the span, with a full record."""

    @traced
    def pay() -> None:
        raise OtelfinError("ZZZ-999", "unknown")

    with pytest.raises(OtelfinError):
        pay()
    (span,) = spans.get_finished_spans()
    assert span.attributes["otelfin.error_code"] == "ZZZ-999"
    assert "exception.stacktrace" in span.events[0].attributes
    # The public name users import, not the private module it is defined in.
    assert span.events[0].attributes["exception.type"] == "otelfin.OtelfinError"
    assert "otelfin._errors" not in span.events[0].attributes["exception.stacktrace"]


def test_otelfin_error_pickles() -> None:
    """OtelfinError survives pickling with its code, message and attributes."""
    err = OtelfinError("PAY-012", "Insufficient balance", amount="9.99")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.code, copy.message, copy.attributes) == (
        "PAY-012",
        "Insufficient balance",
        {"amount": "9.99"},
    )
    assert str(copy) == "PAY-012: Insufficient balance"


def test_double_decoration_gives_one_span(spans: InMemorySpanExporter) -> None:
    """Tracing an already traced function is a no-op."""
    again = traced(plain)
    assert again is plain
    again(1)
    assert len(spans.get_finished_spans()) == 1


def test_works_without_configure() -> None:
    """Before configure() the decorator is transparent (no-op tracer provider)."""
    assert plain(2, 3) == 5
    assert otelfin.get_config() is None


def test_explicit_tracer_provider() -> None:
    """tracer_provider= sends spans to that provider instead of the global one."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    @traced(tracer_provider=provider)
    def f() -> int:
        return 1

    assert f() == 1
    assert [s.name for s in exporter.get_finished_spans()] == [
        "test_explicit_tracer_provider.<locals>.f"
    ]


def test_partials_and_callable_objects(spans: InMemorySpanExporter) -> None:
    """functools.partial and callable instances can be traced; they are named sensibly."""
    import functools

    class Fee:
        def __call__(self, amount: float) -> float:
            return amount * 0.01

    def add(a: int, b: int) -> int:
        return a + b

    fee = traced(Fee())
    add_five = traced(functools.partial(add, 5))
    named = traced(name="fee.compute")(Fee())
    assert fee(200.0) == 2.0
    assert add_five(1) == 6
    assert named(100.0) == 1.0
    names = [s.name for s in spans.get_finished_spans()]
    assert names == [
        "test_partials_and_callable_objects.<locals>.Fee",
        "test_partials_and_callable_objects.<locals>.add",
        "fee.compute",
    ]
