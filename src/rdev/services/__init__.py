"""Use cases: domain + ports only."""
