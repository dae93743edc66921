"""The `{name}` rules in plain Python: per user and day, how many readings
there were and the sum of their values, rejecting NULL and non-finite ones.
Replace them with your own; `python3 -m unittest` tests them natively."""

from math import isfinite


def aggregate(values):
    """(reading_count, rejected_count, total) of one day's values."""
    good = [v for v in values if v is not None and isfinite(v)]
    return len(good), len(values) - len(good), sum(good)
