"""CI adapters: implementations of the CIProvider port (Woodpecker today)."""

from rdev.adapters.ci.factory import SUPPORTED_CI_PROVIDERS, build_ci_provider
from rdev.adapters.ci.woodpecker import WoodpeckerCI, clear_repo_id_cache
from rdev.adapters.ci.woodpecker_mapping import (
    TERMINAL_STATES,
    WOODPECKER_STATUS_MAP,
    map_status,
)

__all__ = [
    "SUPPORTED_CI_PROVIDERS",
    "TERMINAL_STATES",
    "WOODPECKER_STATUS_MAP",
    "WoodpeckerCI",
    "build_ci_provider",
    "clear_repo_id_cache",
    "map_status",
]
