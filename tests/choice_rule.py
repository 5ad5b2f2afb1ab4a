"""The free-form engine choice's rule, written out for the tests that check a choice against its figures."""

from __future__ import annotations

from station.core.freeform import CHOICE_MARGIN


def chosen_by_the_rule(ranking: dict[str, float], order: tuple[str, ...]) -> str:
    """The free-form choice as docs/photographs.md states it: in the candidates' order, a later one is chosen
    where its figure (its worst kind, or its mean above chance where every candidate is blind to a kind) is
    better than the one chosen so far by more than the margin."""
    choice = order[0]
    for name in order[1:]:
        if ranking[name] > ranking[choice] + CHOICE_MARGIN:
            choice = name
    return choice
