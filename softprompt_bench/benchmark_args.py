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


def counts(minimum: int = 1):
    """An argparse `type=` for comma-separated integers, each >= `minimum` (e.g. `--lengths 20,5`)."""
    one = count(minimum)

    def parse(text: str) -> list[int]:
        return [one(part) for part in text.split(",")]

    return parse
