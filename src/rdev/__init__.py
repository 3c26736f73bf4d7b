"""rdev: self-hosted build orchestration for bot-driven development."""

__version__ = "0.1.0"
