"""``otelfin demo``: the example payment gateway on loopback, a workload, and what it shows.

The gateway itself is :mod:`otelfin._demo.payment_gateway`, which is ``examples/payment_gateway``
of the source tree (a symlink there, real files in the wheel), so the example a reader opens is
exactly what the command runs. This package only orchestrates: start the services, drive the
workload, collect the artefacts, and report from them with otelfin's own tools.
"""

from __future__ import annotations

from otelfin._demo._run import DemoError, DemoOptions, DemoResult, run_demo

__all__ = ["DemoError", "DemoOptions", "DemoResult", "run_demo"]
