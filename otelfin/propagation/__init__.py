"""otelfin propagation pillar."""

__all__: list[str] = []
