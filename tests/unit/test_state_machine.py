import itertools

import pytest

from rdev.domain.errors import IllegalTransition
from rdev.domain.models import BuildStatus as S
from rdev.domain.state_machine import TRANSITIONS, check_transition

LEGAL = {
    (S.PENDING, S.RUNNING),
    (S.PENDING, S.CANCELLED),
    (S.PENDING, S.FAILED),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
    (S.RUNNING, S.PENDING),
}


@pytest.mark.parametrize("src,dst", sorted(itertools.product(S, S)))
def test_every_transition_is_decided_by_the_table(src, dst):
    if (src, dst) in LEGAL:
        check_transition(src, dst)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(src, dst)


def test_final_statuses_have_no_way_out():
    for s in (S.COMPLETED, S.FAILED, S.CANCELLED):
        assert s.is_final
        assert TRANSITIONS[s] == frozenset()
