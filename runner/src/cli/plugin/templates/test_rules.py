import math
import unittest

import rules


class Rules(unittest.TestCase):
    def test_sums_the_days_values_and_rejects_bad_ones(self):
        self.assertEqual(rules.aggregate([1.5, 2.5, None, math.nan]), (2, 2, 4.0))


if __name__ == "__main__":
    unittest.main()
