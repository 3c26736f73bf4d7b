"""Git credentials for claimed tasks: the claim's last step before the worker gets it.

A claim's tasks come from the work queue with the project's stored git credential, if it has
one. Some repo hosts instead take a credential the server mints per task (the ``local``
host's task git credential, derived from the lease): the worker service hands every claim
to a :class:`ClaimCredentials` right after the queue's claim, so the queue never learns how
credentials are made and the minting never needs a wrapper around the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rdev.domain.models import ClaimedTask


class ClaimCredentials(Protocol):
    async def add_credentials(self, tasks: Sequence[ClaimedTask]) -> list[ClaimedTask]:
        """The same tasks, in order; a task without a git credential whose repository takes
        a minted one gets it. Tasks that already carry a credential are left as they are."""
        ...
