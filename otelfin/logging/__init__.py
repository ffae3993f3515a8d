"""otelfin logging pillar."""

__all__: list[str] = []
