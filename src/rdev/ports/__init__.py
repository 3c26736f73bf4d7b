"""Interfaces (typing.Protocol) that services depend on; adapters implement them."""
