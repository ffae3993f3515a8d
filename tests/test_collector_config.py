"""examples/collector/tail_sampling.yaml is a valid tail_sampling configuration over otelfin's
attributes.

No Collector binary here: the file is parsed and checked against the processor's documented
configuration (``processor/tailsamplingprocessor/config.go`` and README in
opentelemetry-collector-contrib): top-level keys, policy types, each type's own block and its
field names and value types, unique names, Go-compatible regular expressions, and that the
attribute keys and values are the ones otelfin writes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from otelfin import _settings
from otelfin._keep import KEEP_REASONS
from otelfin.catalogue import default_catalogue

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "collector" / "tail_sampling.yaml"

_TOP = {
    "decision_wait": str,
    "num_traces": int,
    "expected_new_traces_per_sec": int,
    "decision_cache": dict,
    "sample_on_first_match": bool,
    "policies": list,
}
# Fields of each policy type's block, with their YAML value types.
_TYPES: dict[str, dict[str, type | tuple[type, ...]]] = {
    "always_sample": {},
    "latency": {"threshold_ms": int, "upper_threshold_ms": int},
    "numeric_attribute": {"key": str, "min_value": int, "max_value": int, "invert_match": bool},
    "probabilistic": {"hash_salt": str, "sampling_percentage": (int, float)},
    "status_code": {"status_codes": list},
    "string_attribute": {
        "key": str,
        "values": list,
        "enabled_regex_matching": bool,
        "cache_max_size": int,
        "invert_match": bool,
    },
    "rate_limiting": {"spans_per_second": int},
    "bytes_limiting": {"bytes_per_second": int, "burst_capacity": int},
    "span_count": {"min_spans": int, "max_spans": int},
    "boolean_attribute": {"key": str, "value": bool, "invert_match": bool},
    "trace_state": {"key": str, "values": list},
    "ottl_condition": {"error_mode": str, "span": list, "spanevent": list},
    "and": {"and_sub_policy": list},
    "composite": {
        "max_total_spans_per_second": int,
        "policy_order": list,
        "composite_sub_policy": list,
        "rate_allocation": list,
    },
    "drop": {"drop_sub_policy": list},
}
_STATUS_CODES = {"OK", "ERROR", "UNSET"}
# What otelfin writes, per attribute key the config may match on.
_OTELFIN_VALUES = {
    "otelfin.outcome": {"ok", "declined", "error"},
    "otelfin.kept_by": {*KEEP_REASONS, "sampled"},
}
# Go's RE2 has no lookaround or backreferences.
_NOT_RE2 = re.compile(r"\(\?[=!<]|\\[1-9]")


def _policies(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """``policy`` and every sub-policy under it."""
    found = [policy]
    block = policy.get(policy.get("type", ""), {}) or {}
    for key in ("and_sub_policy", "composite_sub_policy", "drop_sub_policy"):
        for sub in block.get(key, []):
            found.extend(_policies(sub))
    return found


def _check_policy(policy: dict[str, Any], where: str) -> list[str]:
    problems = []
    name, kind = policy.get("name"), policy.get("type")
    if not isinstance(name, str) or not name:
        problems.append(f"{where}: a policy needs a name")
    if kind not in _TYPES:
        return [*problems, f"{where} ({name}): unknown type {kind!r}"]
    extra = set(policy) - {"name", "type", kind}
    if extra:
        problems.append(f"{where} ({name}): blocks for another type: {sorted(extra)}")
    fields = _TYPES[kind]
    block = policy.get(kind)
    if fields and not isinstance(block, dict):
        return [*problems, f"{where} ({name}): type {kind} needs a {kind}: block"]
    for field, value in (block or {}).items():
        if field not in fields:
            problems.append(f"{where} ({name}): {kind} has no field {field!r}")
        elif not isinstance(value, fields[field]) or isinstance(value, bool) != (
            fields[field] is bool
        ):
            problems.append(f"{where} ({name}): {kind}.{field} has the wrong type")
    if kind == "status_code":
        bad = set(block["status_codes"]) - _STATUS_CODES
        if bad:
            problems.append(f"{where} ({name}): unknown status codes {sorted(bad)}")
    if kind == "string_attribute":
        if not block.get("key") or not block.get("values"):
            problems.append(f"{where} ({name}): string_attribute needs key and values")
        if block.get("enabled_regex_matching"):
            for pattern in block["values"]:
                re.compile(pattern)
                if _NOT_RE2.search(pattern):
                    problems.append(f"{where} ({name}): {pattern!r} is not RE2")
    if kind == "latency" and block.get("threshold_ms", 0) <= 0:
        problems.append(f"{where} ({name}): latency.threshold_ms must be positive")
    if kind == "probabilistic" and not 0 < block.get("sampling_percentage", 0) <= 100:
        problems.append(f"{where} ({name}): sampling_percentage must be in (0, 100]")
    return problems


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded = yaml.safe_load(CONFIG.read_text("utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_processor_structure_follows_the_documented_schema(config: dict[str, Any]) -> None:
    """Known top-level keys and types, known policy types with their own fields, unique names."""
    processor = config["processors"]["tail_sampling"]
    assert set(processor) <= set(_TOP), set(processor) - set(_TOP)
    for key, value in processor.items():
        assert isinstance(value, _TOP[key]), key
    assert re.fullmatch(r"[0-9]+(ms|s|m)", processor["decision_wait"])
    assert set(processor["decision_cache"]) <= {"sampled_cache_size", "non_sampled_cache_size"}
    problems = []
    names: list[str] = []
    for i, policy in enumerate(processor["policies"]):
        for sub in _policies(policy):
            problems += _check_policy(sub, f"policies[{i}]")
        names.append(policy["name"])
    assert problems == []
    assert len(names) == len(set(names)), names


def test_the_checker_refuses_what_the_collector_would() -> None:
    """The schema check is not vacuous: unknown types, stray fields and bad values fail."""
    assert _check_policy({"name": "x", "type": "slow_traces"}, "p")
    assert _check_policy({"name": "x", "type": "latency", "latency": {"threshold": 5}}, "p")
    assert _check_policy({"name": "x", "type": "latency", "string_attribute": {}}, "p")
    bad_status = {"name": "x", "type": "status_code", "status_code": {"status_codes": ["FAIL"]}}
    assert _check_policy(bad_status, "p")
    lookahead = {
        "name": "x",
        "type": "string_attribute",
        "string_attribute": {"key": "k", "values": ["(?!a)b"], "enabled_regex_matching": True},
    }
    assert _check_policy(lookahead, "p")


def test_policies_match_what_otelfin_writes(config: dict[str, Any]) -> None:
    """Outcome, kept_by and error-code policies use otelfin's keys and values; the latency
    policy sits on the default SLO; the baseline matches a 1% head sampler."""
    policies = [
        p for top in config["processors"]["tail_sampling"]["policies"] for p in _policies(top)
    ]
    by_key: dict[str, list[dict[str, Any]]] = {}
    for policy in policies:
        if policy["type"] == "string_attribute":
            block = policy["string_attribute"]
            by_key.setdefault(block["key"], []).append(block)
    outcomes = {v for block in by_key["otelfin.outcome"] for v in block["values"]}
    assert outcomes == {"error", "declined"}
    assert outcomes <= _OTELFIN_VALUES["otelfin.outcome"]
    kept = {v for block in by_key["otelfin.kept_by"] for v in block["values"]}
    assert kept == set(KEEP_REASONS) and kept <= _OTELFIN_VALUES["otelfin.kept_by"]
    (codes,) = by_key["otelfin.error_code"]
    pattern = re.compile(codes["values"][0])
    assert all(pattern.search(code) for code in default_catalogue())
    assert not pattern.search("unclassified") and not pattern.search("pay-12")
    assert "payment.channel" in by_key
    latency = [p["latency"]["threshold_ms"] for p in policies if p["type"] == "latency"]
    default_slo_ms = _settings.by_name("metrics_slo").default * 1000
    assert default_slo_ms in latency
    (baseline,) = [p for p in policies if p["type"] == "probabilistic"]
    assert baseline["probabilistic"]["sampling_percentage"] == 1


def test_pipeline_wires_the_processor(config: dict[str, Any]) -> None:
    """The traces pipeline runs tail_sampling before batch, from a receiver to an exporter."""
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["processors"][0] == "tail_sampling"
    for kind in ("receivers", "processors", "exporters"):
        for name in pipeline[kind]:
            assert name in config[kind], name
