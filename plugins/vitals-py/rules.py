"""The vitals rules of docs/aggregation-spec.md in plain Python: unit
conversion, plausibility, and the daily figures. No WebAssembly here, so
`python -m unittest` tests them as they are."""

from dataclasses import dataclass
from typing import Callable, Optional

KPA_TO_MMHG = 7.50062
LB_TO_KG = 0.45359237


def identity(v: float) -> float:
    return v


def factor(f: float) -> Callable[[float], float]:
    return lambda v: v * f


def fahrenheit_to_celsius(v: float) -> float:
    return (v - 32.0) * 5.0 / 9.0


@dataclass(frozen=True)
class Metric:
    name: str
    canonical: str
    units: dict  # accepted unit -> conversion to the canonical unit
    low: float
    high: float


# The spec's metric table, in output order.
METRICS = [
    Metric("heart_rate", "bpm", {"bpm": identity}, 20.0, 300.0),
    Metric("systolic_bp", "mmHg", {"mmHg": identity, "kPa": factor(KPA_TO_MMHG)}, 50.0, 300.0),
    Metric("diastolic_bp", "mmHg", {"mmHg": identity, "kPa": factor(KPA_TO_MMHG)}, 20.0, 200.0),
    Metric("spo2", "%", {"%": identity, "fraction": factor(100.0)}, 50.0, 100.0),
    Metric(
        "temperature",
        "C",
        {"C": identity, "celsius": identity, "F": fahrenheit_to_celsius, "fahrenheit": fahrenheit_to_celsius},
        25.0,
        45.0,
    ),
    Metric("weight", "kg", {"kg": identity, "lb": factor(LB_TO_KG), "lbs": factor(LB_TO_KG)}, 1.0, 500.0),
    Metric("respiratory_rate", "breaths/min", {"breaths/min": identity}, 1.0, 100.0),
]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _normal_unit(unit: str) -> str:
    return unit.strip().translate(_ASCII_LOWER)


def unit_matches(given: str, accepted: str) -> bool:
    """Units match after trimming, ignoring ASCII case only (as the Rust kit)."""
    return _normal_unit(given) == _normal_unit(accepted)


# Each metric's conversions by normalised unit, and each metric's place by
# name: built once, at import (componentize-py runs that at build time), so
# a reading costs two dict lookups, not a comparison per accepted unit. The
# first accepted unit wins when two normalise alike, as in a search.
_CONVERSIONS = {}
for _metric in METRICS:
    _by_unit = _CONVERSIONS.setdefault(_metric.name, {})
    for _unit, _convert in _metric.units.items():
        _by_unit.setdefault(_normal_unit(_unit), _convert)
_PLACE = {metric.name: place for place, metric in enumerate(METRICS)}


@dataclass(slots=True)
class Reading:
    id: int
    at: int  # microseconds since the epoch
    metric: Optional[str]
    value: Optional[float]
    unit: Optional[str]


@dataclass(slots=True)
class Daily:
    metric: str
    unit: str
    sample_count: int = 0
    rejected_count: int = 0
    min_value: Optional[float] = None
    max_value: Optional[float] = None
    avg_value: Optional[float] = None
    last_value: Optional[float] = None


def aggregate(readings: list[Reading]) -> tuple[list[Daily], int]:
    """One row per known metric seen that day, and the rows rejected.
    Readings of unknown metrics are ignored, not counted."""
    ordered = sorted(readings, key=lambda r: (r.at, r.id))
    return aggregate_columns(
        [r.id for r in ordered],
        [r.at for r in ordered],
        [r.metric for r in ordered],
        [r.value for r in ordered],
        [r.unit for r in ordered],
    )


def aggregate_columns(ids, ats, metrics, values, units) -> tuple[list[Daily], int]:
    """The same over a group's columns (as the runner passes them, WIT
    0.3), one entry per row, None where NULL: no object per reading. The
    rows come ordered by (at, id), as the runner passes them, so a metric's
    latest accepted reading is its last one."""
    # One pass sorts the rows (their indexes) by metric.
    by_metric = [[] for _ in METRICS]
    place_of = _PLACE.get
    for i, metric in enumerate(metrics):
        place = place_of(metric)
        if place is not None:
            by_metric[place].append(i)

    out = []
    rejected = 0
    for metric, mine in zip(METRICS, by_metric):
        if not mine:
            continue
        # A day has few distinct units: each is looked up once, to its
        # conversion (None when the metric does not accept it).
        conversions = _CONVERSIONS[metric.name]
        by_unit = {}
        low_bound, high_bound = metric.low, metric.high
        accepted = []
        total = 0.0
        for i in mine:
            value, unit = values[i], units[i]
            if value is None or unit is None:
                continue
            try:
                convert = by_unit[unit]
            except KeyError:
                convert = by_unit[unit] = conversions.get(_normal_unit(unit))
            if convert is None:
                continue
            v = value if convert is identity else convert(value)
            # NaN fails both comparisons; infinities fail one.
            if low_bound <= v <= high_bound:
                accepted.append(v)
                # Added in row order, one by one, as every vitals plugin
                # does: `sum()` compensates (Python 3.12+) and would differ
                # from the others in the last digit.
                total += v
        daily = Daily(metric.name, metric.canonical)
        count = len(accepted)
        daily.sample_count, daily.rejected_count = count, len(mine) - count
        if count:
            daily.min_value, daily.max_value = min(accepted), max(accepted)
            daily.avg_value = total / count
            daily.last_value = accepted[-1]
        rejected += daily.rejected_count
        out.append(daily)
    return out, rejected
