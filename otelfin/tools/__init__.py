"""Offline tooling: what runs beside a service, never inside one.

The P99 report, bucket design, rule and dashboard generation, log validation and filtering,
trace reading (``traces show``/``traces why``) and the demo runner live here. The runtime
pillars (``instrument``, ``propagation``, ``metrics``, ``logging``, ``scrub``) never import this
package; the CLI does.
"""
