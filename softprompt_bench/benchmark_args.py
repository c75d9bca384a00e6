"""Argument types the benchmark scripts and recipes share: a bad count is an argparse error naming it, before
any work (a zero `--rounds` used to end in "no median for empty data" after the whole run)."""

from __future__ import annotations

import argparse


def count(minimum: int = 1, multiple_of: int = 1):
    """An argparse `type=` for an integer >= `minimum` that is a multiple of `multiple_of`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        if value % multiple_of:
            raise argparse.ArgumentTypeError(f"{value} is not a multiple of {multiple_of}")
        return value

    return parse


def counts(minimum: int = 1, distinct: bool = False):
    """An argparse `type=` for comma-separated integers, each >= `minimum` (e.g. `--lengths 20,5`); with `distinct`,
    none repeated (rows keyed by the value would silently collapse)."""
    one = count(minimum)

    def parse(text: str) -> list[int]:
        values = [one(part) for part in text.split(",")]
        repeated = sorted({value for value in values if values.count(value) > 1})
        if distinct and repeated:
            raise argparse.ArgumentTypeError(f"{', '.join(map(str, repeated))} is repeated; expected distinct values")
        return values

    return parse


def require_rows(parser: argparse.ArgumentParser, option: str, batch: int, rounds: int, available: int, split: str) -> None:
    """A usage error unless `rounds` timed rounds plus one warm-up, each `batch` rows of its own, fit in the `available`
    rows of `split` (more used to end in an IndexError, or in short batches timed as full ones)."""
    needed = batch * (rounds + 1)
    if needed > available:
        largest = available // (rounds + 1)
        parser.error(f"{option} {batch} x (--rounds {rounds} + 1 warm-up) needs {needed} rows; {split} has {available}: "
                     + (f"use {option} <= {largest} or fewer --rounds." if largest else "use fewer --rounds."))  # fmt: skip
