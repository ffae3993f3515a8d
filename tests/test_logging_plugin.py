"""The pytest plugin's logging parts: ``captured_logs`` and the opt-in log check."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

_INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
_TESTS = """
import pytest
import otelfin
from otelfin.logging import _pipeline

def test_unregistered_code():
    otelfin.get_logger().error("declined", error_code="PAY-999")

def test_clean():
    otelfin.get_logger().error("declined", error_code="PAY-012")

def test_raw_leak():
    _pipeline._state.sink.write(
        b'{"timestamp":"2026-11-25T07:30:41Z","level":"info","service_name":"x",'
        b'"event":"card 4111111111111111"}\\n'
    )
"""


def test_check_is_off_by_default(pytester: pytest.Pytester) -> None:
    """Without the marker or option, logs never fail a test."""
    pytester.makeini(_INI)
    pytester.makepyfile(test_inner=_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_option_fails_catalogue_breaks_and_leaks(pytester: pytest.Pytester) -> None:
    """--otelfin-check-logs fails the test with the unregistered code and the one leaking."""
    pytester.makeini(_INI)
    pytester.makepyfile(test_inner=_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--otelfin-check-logs")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*catalogue: unregistered error_code 'PAY-999'*",
            "*unmasked card number (ending 1111)*",
        ]
    )


def test_marker_and_ini_enable_the_check(pytester: pytest.Pytester) -> None:
    """The otelfin_check_logs marker, or the ini option, turns the check on."""
    pytester.makeini(_INI)
    pytester.makepyfile(
        test_marked="""
import pytest
import otelfin

@pytest.mark.otelfin_check_logs
def test_marked():
    otelfin.get_logger().critical("down")

def test_unmarked():
    otelfin.get_logger().critical("down")
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*catalogue: missing error_code on an error event*"])
    pytester.makeini(_INI + "otelfin_check_logs = true\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)


def test_captured_logs_fixture(pytester: pytest.Pytester) -> None:
    """captured_logs yields parsed lines, raw lines and violations of the test."""
    pytester.makeini(_INI)
    pytester.makepyfile(
        test_fixture="""
import otelfin

def test_it(captured_logs, capsys):
    log = otelfin.get_logger()
    log.info("paid", card="4111 1111 1111 1111")
    log.error("declined", error_code="NOPE-001")
    events = [r["event"] for r in captured_logs if r.get("logger") != "otelfin"]
    assert events == ["paid", "declined"]  # the default policy tags, never drops
    assert captured_logs[0]["card"] == "XXXXXXXXXXXX1111"
    assert captured_logs.violations == ["unregistered error_code 'NOPE-001'"]
    assert captured_logs.lines[0].endswith(b"\\n")
    assert "paid" not in capsys.readouterr().out
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_pre_commit_hooks_run_real_commands() -> None:
    """Each hook in .pre-commit-hooks.yaml names an otelfin command that parses."""
    import shlex
    from pathlib import Path

    import yaml

    from otelfin.cli import build_parser

    hooks = yaml.safe_load((Path(__file__).parents[1] / ".pre-commit-hooks.yaml").read_text())
    assert {h["id"] for h in hooks} == {"otelfin-codes-lint", "otelfin-logs-validate"}
    parser = build_parser()
    for hook in hooks:
        argv = shlex.split(hook["entry"])
        assert argv[0] == "otelfin" and hook["language"] == "python"
        args = parser.parse_args([*argv[1:], "some-file"])
        assert callable(args.func)


_APP = """
import otelfin

otelfin.configure("orders-api", catalogue="errorcodes.yaml")   # at import, as apps do

def refuse():
    otelfin.get_logger().error("refused", error_code="ORD-001")
"""

_APP_TESTS = """
import app

def test_a_uses_the_spans_fixture(spans):
    assert spans.get_finished_spans() == ()

def test_b_logs_the_apps_own_code():
    app.refuse()
"""


def test_check_does_not_depend_on_test_order(pytester: pytest.Pytester) -> None:
    """A fixture's teardown puts back the app's import-time configure(): B passes after A."""
    pytester.makeini(_INI)
    pytester.makefile(
        ".yaml",
        errorcodes="codes:\n  ORD-001:\n    message: Order refused\n    severity: error\n",
    )
    pytester.makepyfile(app=_APP, test_order=_APP_TESTS)
    args = ("-p", "no:cacheprovider", "--otelfin-check-logs")
    alone = pytester.runpytest_subprocess(*args, "-k", "test_b")
    alone.assert_outcomes(passed=1, deselected=1)
    both = pytester.runpytest_subprocess(*args)
    both.assert_outcomes(passed=2)
