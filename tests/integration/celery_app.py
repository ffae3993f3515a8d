"""The Celery application the integration tests run a real ``celery worker`` for.

The broker, queue and PostgreSQL table come from the environment the test sets (the producer
in the test process builds its own app with :func:`make_app`). The worker configures otelfin
the way the docs recommend (guides/data-stores.md): in ``worker_init`` (solo and threads
pools, and the prefork parent) and again in ``worker_process_init`` (each forked prefork
child); spans go to ``OTELFIN_SPANS_FILE``, logs to ``OTELFIN_LOG_FILE``, metrics are served on
``OTELFIN_METRICS_PORT``. The test process imports this module too, as the producer, and
configures otelfin itself (the ``spans`` fixture).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery, signals

import otelfin


def make_app(broker: str, queue: str) -> Celery:
    """A Celery app on ``broker`` whose tasks go to ``queue`` (one per test module and broker)."""
    app = Celery("otelfin_test", broker=broker)
    app.conf.update(
        task_default_queue=queue,
        task_ignore_result=True,
        # otelfin's stdlib bridge sits on the root logger; Celery would replace its handlers.
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
    )
    app.task(name="settlement.settle")(settle)
    app.task(name="settlement.decline")(decline)
    app.task(name="settlement.flaky", bind=True, max_retries=3)(flaky)
    return app


@signals.worker_init.connect(weak=False)
@signals.worker_process_init.connect(weak=False)
def _observability(**_: Any) -> None:
    otelfin.configure(service_name="settlement-worker")


@signals.worker_ready.connect(weak=False)
def _ready(**_: Any) -> None:
    marker = os.environ.get("OTELFIN_TEST_READY")
    if marker:
        Path(marker).write_text("ready")


def _insert(payment_id: str, note: str) -> None:
    import psycopg

    table = os.environ["OTELFIN_TEST_TABLE"]
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test") as conn:
        # A literal, as careless code writes it: the statement on the span must be masked.
        conn.execute(f"INSERT INTO {table} (payment_id, note) VALUES ('{payment_id}', '{note}')")


def settle(payment_id: str) -> str:
    """Record the settlement, with a card number in the SQL literal."""
    _insert(payment_id, "settled card 4111 1111 1111 1111")
    return payment_id


def decline(payment_id: str) -> None:
    """A business failure with a catalogue code."""
    raise otelfin.OtelfinError("PAY-012", "insufficient balance", payment_id=payment_id)


def flaky(self: Any, payment_id: str, failures: int) -> str:
    """Fails ``failures`` times (retrying at once), then settles."""
    if self.request.retries < failures:
        raise self.retry(exc=otelfin.OtelfinError("DB-003", "deadlock"), countdown=0)
    _insert(payment_id, f"settled after {self.request.retries} retries")
    return payment_id


#: What ``celery -A tests.integration.celery_app:worker worker`` runs.
worker = make_app(
    os.environ.get("OTELFIN_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    os.environ.get("OTELFIN_TEST_QUEUE", "otelfin-test"),
)
