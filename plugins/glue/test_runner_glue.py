"""The glue's output path, natively: `python3 -m unittest` in this folder.
The WIT bindings componentize-py generates are stood in for by the few
types the glue touches, shaped as the generated ones."""

import enum
import sys
import types
import unittest
from dataclasses import dataclass


def stand_in_bindings():
    t = types.ModuleType("wit_world.imports.types")

    class ColumnType(enum.Enum):
        BOOLEAN = 0
        INTEGER = 1
        FLOAT = 2
        TEXT = 3
        TIMESTAMP = 4
        DATE = 5

    @dataclass
    class Column:
        name: str
        kind: ColumnType

    @dataclass
    class Output:
        rows: int
        booleans: list
        integers: list
        floats: list
        texts: list
        nulls: list
        rejected: int

    t.ColumnType, t.Column, t.Output = ColumnType, Column, Output
    t.PluginError = Exception
    for case in ("Null", "Boolean", "Integer", "Float", "Text", "Timestamp", "Date"):
        setattr(t, f"Value_{case}", type(f"Value_{case}", (), {}))
    imports = types.ModuleType("wit_world.imports")
    imports.types = t
    errors = types.ModuleType("componentize_py_types")
    errors.Err = type("Err", (Exception,), {})
    sys.modules.update(
        {"wit_world": types.ModuleType("wit_world"), "wit_world.imports": imports,
         "wit_world.imports.types": t, "componentize_py_types": errors}
    )
    return t


t = stand_in_bindings()
import runner_glue as glue  # noqa: E402  (after the stand-ins)

T = t.ColumnType
COLUMNS = [
    t.Column("metric", T.TEXT),
    t.Column("count", T.INTEGER),
    t.Column("low", T.FLOAT),
    t.Column("day", T.DATE),
    t.Column("ok", T.BOOLEAN),
]


def out(rows, rejected=0):
    return glue.by_column(rows, rejected, COLUMNS, glue.plan(COLUMNS))


class ByColumn(unittest.TestCase):
    def test_each_column_joins_the_list_of_its_type_and_nulls_name_their_cells(self):
        o = out([("hr", 3, None, 19000, True), ("bp", None, 2, 19001, None)], rejected=4)
        self.assertEqual(o.rows, 2)
        self.assertEqual(o.texts, ["hr", "bp"])
        # count, then day: integer and date columns share the list.
        self.assertEqual(o.integers, [3, 0, 19000, 19001])
        self.assertEqual(o.floats, [0.0, 2.0])
        self.assertIsInstance(o.floats[1], float)
        self.assertEqual(o.booleans, [True, False])
        # Cells are column x rows + row: count of row 1, low of row 0, ok of row 1.
        self.assertEqual(o.nulls, [3, 4, 9])
        self.assertEqual(o.rejected, 4)

    def test_no_rows(self):
        o = out([])
        self.assertEqual((o.rows, o.texts, o.integers, o.nulls), (0, [], [], []))

    def test_a_misfit_is_named_by_row_column_and_value(self):
        cases = [
            ([("hr", 1, 1.0, 1)], "output row 0 has 4 values; describe() declares 5 output columns"),
            ([("hr", 1, 1.0, 1, True), ("bp", True, 1.0, 1, True)], "output row 1, column `count` (integer): got bool True"),
            ([("hr", 1, "x", 1, True)], "output row 0, column `low` (float): got str 'x'"),
            ([("hr", 1, 1.0, 1 << 40, True)], "output row 0, column `day`: 1099511627776 does not fit 32 bits"),
            ([("hr", -(1 << 64), 1.0, 1, True)], "output row 0, column `count`: -18446744073709551616 does not fit 64 bits"),
        ]
        for rows, message in cases:
            with self.assertRaises(TypeError) as caught:
                out(rows)
            self.assertEqual(str(caught.exception), message)

    def test_guarded_passes_rows_through_the_glue_and_names_exceptions(self):
        class Plugin:
            def describe(self):
                return types.SimpleNamespace(output=COLUMNS)

            @glue.guarded
            def aggregate(self, group):
                if group == "bad":
                    return {}["missing"]
                return [("hr", 1, 1.5, 2, False)], 0

        self.assertEqual(Plugin().aggregate("good").floats, [1.5])
        with self.assertRaises(sys.modules["componentize_py_types"].Err) as caught:
            Plugin().aggregate("bad")
        self.assertIn("KeyError: 'missing' (at test_runner_glue.py:", str(caught.exception.args[0]))


if __name__ == "__main__":
    unittest.main()
