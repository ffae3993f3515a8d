"""Context isolation: threads and asyncio tasks each keep their own trace."""

from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import ThreadPoolExecutor

from opentelemetry import context, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otelfin


@otelfin.traced(name="leaf")
def leaf(request_id: int) -> tuple[int, int]:
    span = trace.get_current_span()
    return request_id, span.get_span_context().trace_id


@otelfin.traced(name="request", attributes={"request.id": "request_id"})
def handle(request_id: int) -> tuple[int, int, int]:
    own = trace.get_current_span().get_span_context().trace_id
    rid, leaf_trace = leaf(request_id)
    return rid, own, leaf_trace


def test_thread_pool_requests_never_share_context(spans: InMemorySpanExporter) -> None:
    """200 requests on 8 threads: each leaf is in its own request's trace, none leak."""
    barrier = threading.Barrier(8)

    def run(i: int) -> tuple[int, int, int]:
        if i < 8:
            barrier.wait()
        return handle(i)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(200)))
    assert all(own == leaf_trace for _, own, leaf_trace in results)
    assert len({own for _, own, _ in results}) == 200
    requests = [s for s in spans.get_finished_spans() if s.name == "request"]
    assert all(s.parent is None for s in requests)
    leaves = {s.parent.span_id: s for s in spans.get_finished_spans() if s.name == "leaf"}
    for req in requests:
        assert leaves[req.context.span_id].context.trace_id == req.context.trace_id
    assert not trace.get_current_span().get_span_context().is_valid


async def test_asyncio_tasks_keep_their_own_context(spans: InMemorySpanExporter) -> None:
    """500 interleaved tasks: every child span parents to its own task's span."""

    @otelfin.traced(name="child")
    async def child(i: int) -> int:
        await asyncio.sleep(random.random() / 1000)
        return trace.get_current_span().get_span_context().trace_id

    @otelfin.traced(name="task", attributes={"task.id": "i"})
    async def task(i: int) -> tuple[int, int]:
        own = trace.get_current_span().get_span_context().trace_id
        await asyncio.sleep(random.random() / 1000)
        inner = await child(i)
        assert trace.get_current_span().get_span_context().trace_id == own
        return own, inner

    results = await asyncio.gather(*(task(i) for i in range(500)))
    assert all(own == inner for own, inner in results)
    assert len({own for own, _ in results}) == 500
    assert context.get_current() == context.get_current()  # loop context untouched
    assert not trace.get_current_span().get_span_context().is_valid


async def test_async_generators_interleaved(spans: InMemorySpanExporter) -> None:
    """Two traced async generators consumed alternately never see each other's span."""

    @otelfin.traced(name="stream")
    async def stream(tag: str):  # type: ignore[no-untyped-def]
        for _ in range(3):
            yield tag, trace.get_current_span().get_span_context().span_id

    a, b = stream("a"), stream("b")
    seen: dict[str, set[int]] = {"a": set(), "b": set()}
    for _ in range(3):
        for gen in (a, b):
            tag, span_id = await gen.__anext__()
            seen[tag].add(span_id)
            assert not trace.get_current_span().get_span_context().is_valid
    assert len(seen["a"]) == 1 and len(seen["b"]) == 1 and seen["a"] != seen["b"]


def test_context_crosses_thread_pool_submit(spans: InMemorySpanExporter) -> None:
    """After configure(), work submitted to a ThreadPoolExecutor continues the caller's trace."""

    @otelfin.traced(name="worker")
    def worker() -> int:
        return trace.get_current_span().get_span_context().trace_id

    @otelfin.traced(name="fan_out")
    def fan_out() -> list[int]:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(worker) for _ in range(8)]
            thread = threading.Thread(target=worker)
            thread.start()
            thread.join()
            return [f.result() for f in futures]

    trace_ids = fan_out()
    by_name: dict[str, list] = {}
    for span in spans.get_finished_spans():
        by_name.setdefault(span.name, []).append(span)
    (root,) = by_name["fan_out"]
    assert set(trace_ids) == {root.context.trace_id}
    assert len(by_name["worker"]) == 9
    assert all(w.parent.span_id == root.context.span_id for w in by_name["worker"])
