"""The benchmarks' one way to compare two timings: the median over rounds of the per-round ratios.

Each round times both variants back to back (the same machine state), so a ratio is taken within a
round, then the median over rounds. A ratio of two medians would pair one variant's round with the
other's from another machine state. Plain Python only: the serving venv imports this too.
"""

from __future__ import annotations

import statistics


def per_round_ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """numerators[i] / denominators[i] for every round i; both lists time the same rounds."""
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError(f"per-round ratios need the same non-zero number of rounds on both sides, "
                         f"got {len(numerators)} and {len(denominators)}.")  # fmt: skip
    return [n / d for n, d in zip(numerators, denominators)]


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median over rounds of numerators[i] / denominators[i]."""
    return statistics.median(per_round_ratios(numerators, denominators))


def ratio_quartiles(numerators: list[float], denominators: list[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of the per-round ratios: how far one round's noise reaches."""
    ratios = per_round_ratios(numerators, denominators)
    if len(ratios) == 1:
        return (ratios[0],) * 3
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return q1, statistics.median(ratios), q3
