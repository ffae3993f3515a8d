"""`otelfin demo` refuses bad options up front (exit 2, a reason, no service started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from otelfin.cli import main


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--slow-channel", "paypal"], "is not a channel"),
        (["--requests", "0"], "positive whole number"),
        (["--seconds", "-1"], "positive number of seconds"),
        (["--amqp", "http://127.0.0.1:5672/"], "must start with amqp://"),
        (["--nats", "127.0.0.1:4222"], "must start with nats://"),
        (["--otlp", "127.0.0.1:4318"], "must start with http://"),
        (["--amqp", "amqp://x/", "--nats", "nats://y"], "not allowed with"),
    ],
)
def test_bad_demo_options_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    """Each bad option is a usage error naming the problem; nothing is written to --out."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as raised:
        raise SystemExit(main(["demo", "--out", str(out), *argv]))
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert reason in err and "Traceback" not in err
    assert not out.exists()
