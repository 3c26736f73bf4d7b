"""Former home of small shared pieces of the SQL stores; kept only so old imports work.

Import from the modules named for what they hold: :mod:`.stamps` (ids, tokens, ``utcnow``),
:mod:`.build_rows` (build columns and row conversion), :mod:`.transitions` (state changes).
"""

from __future__ import annotations

from .build_rows import BUILD_COLUMNS, build_from_row, build_select
from .stamps import new_id, new_token, utcnow
from .transitions import transition

__all__ = [
    "BUILD_COLUMNS",
    "build_from_row",
    "build_select",
    "new_id",
    "new_token",
    "transition",
    "utcnow",
]
