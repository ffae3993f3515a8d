"""otelfin metrics pillar."""

__all__: list[str] = []
