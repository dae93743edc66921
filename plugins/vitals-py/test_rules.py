"""`python -m unittest` in plugins/vitals-py: the rules, natively."""

import math
import unittest

from rules import Reading, aggregate, unit_matches


def r(id, at, metric, value, unit):
    return Reading(id, at, metric, value, unit)


def one(readings):
    daily, _ = aggregate(readings)
    assert len(daily) == 1, daily
    return daily[0]


class Rules(unittest.TestCase):
    def test_converts_units_to_canonical(self):
        d = one([r(1, 1, "temperature", 98.6, "F"), r(2, 2, "temperature", 37.0, "celsius")])
        self.assertEqual((d.unit, d.sample_count), ("C", 2))
        self.assertAlmostEqual(d.min_value, 37.0)
        self.assertAlmostEqual(one([r(1, 1, "systolic_bp", 16.0, "kPa")]).max_value, 16.0 * 7.50062)
        self.assertAlmostEqual(one([r(1, 1, "spo2", 0.97, "fraction")]).avg_value, 97.0)
        self.assertAlmostEqual(one([r(1, 1, "weight", 150.0, "lbs")]).last_value, 150.0 * 0.45359237)

    def test_rejects_bad_units_values_and_implausible_readings(self):
        d = one(
            [
                r(1, 1, "heart_rate", None, "bpm"),
                r(2, 2, "heart_rate", math.nan, "bpm"),
                r(3, 3, "heart_rate", math.inf, "bpm"),
                r(4, 4, "heart_rate", 60.0, "furlongs"),
                r(5, 5, "heart_rate", 301.0, "bpm"),
                r(6, 6, "heart_rate", 300.0, "BPM "),
            ]
        )
        self.assertEqual((d.sample_count, d.rejected_count, d.max_value), (1, 5, 300.0))

    def test_non_ascii_units_match_only_exactly(self):
        self.assertTrue(unit_matches(" Kg", "kg"))
        self.assertFalse(unit_matches("KG\u0130", "kgi"))

    def test_latest_is_greatest_timestamp_then_greatest_id(self):
        d = one([r(9, 100, "heart_rate", 70.0, "bpm"), r(3, 200, "heart_rate", 80.0, "bpm"), r(4, 200, "heart_rate", 90.0, "bpm")])
        self.assertEqual(d.last_value, 90.0)

    def test_all_rejected_gives_counts_and_null_figures(self):
        d = one([r(1, 1, "spo2", 10.0, "%")])
        self.assertEqual((d.sample_count, d.rejected_count), (0, 1))
        self.assertEqual((d.min_value, d.max_value, d.avg_value, d.last_value), (None, None, None, None))

    def test_unknown_metrics_are_ignored_and_not_counted(self):
        daily, rejected = aggregate([r(1, 1, "steps", 1000.0, "count")])
        self.assertEqual((daily, rejected), ([], 0))

    def test_one_row_per_metric_seen_in_spec_order(self):
        daily, _ = aggregate([r(1, 1, "weight", 70.0, "kg"), r(2, 2, "heart_rate", 60.0, "bpm")])
        self.assertEqual([d.metric for d in daily], ["heart_rate", "weight"])


if __name__ == "__main__":
    unittest.main()
