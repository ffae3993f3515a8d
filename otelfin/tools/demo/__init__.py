"""``otelfin demo``: the example payment gateway on loopback, a workload, and what it shows.

The gateway itself is :mod:`otelfin.tools.demo.payment_gateway`, package data of otelfin (real
files in the source tree and the wheel; ``examples/payment_gateway`` points here), so the example
a reader opens is exactly what the command runs. This package only orchestrates: start the
services, drive the workload, collect the artefacts, and report from them with otelfin's own
tools.
"""

from __future__ import annotations

from otelfin.tools.demo._run import DemoError, DemoOptions, DemoResult, run_demo

__all__ = ["DemoError", "DemoOptions", "DemoResult", "run_demo"]
