"""The vitals plugin in Python: the WIT glue around `rules`. Built with
componentize-py (`cargo xtask build-plugins`)."""

import wit_world
from wit_world.imports import types as t

import rules
from runner_glue import column, guarded

VERSION = "1.0.0"

T = t.ColumnType


def _value(x):
    if x is None:
        return t.Value_Null()
    if isinstance(x, str):
        return t.Value_Text(x)
    if isinstance(x, int):
        return t.Value_Integer(x)
    return t.Value_Float(x)


class WitWorld(wit_world.WitWorld):
    def describe(self) -> t.Description:
        return t.Description(
            name="vitals-py",
            version=VERSION,
            input=[t.Column("metric", T.TEXT), t.Column("value", T.FLOAT), t.Column("unit", T.TEXT)],
            output=[
                t.Column("metric", T.TEXT),
                t.Column("unit", T.TEXT),
                t.Column("sample_count", T.INTEGER),
                t.Column("rejected_count", T.INTEGER),
                t.Column("min_value", T.FLOAT),
                t.Column("max_value", T.FLOAT),
                t.Column("avg_value", T.FLOAT),
                t.Column("last_value", T.FLOAT),
            ],
            key=["metric"],
            settings=[],
        )

    # Exceptions and wrong output values reach the operator by name.
    @guarded
    def aggregate(self, group: t.Group) -> t.Output:
        daily, rejected = rules.aggregate_columns(
            group.ids, group.ats, column(group, 0), column(group, 1), column(group, 2)
        )
        rows = [
            [
                _value(d.metric),
                _value(d.unit),
                _value(d.sample_count),
                _value(d.rejected_count),
                _value(d.min_value),
                _value(d.max_value),
                _value(d.avg_value),
                _value(d.last_value),
            ]
            for d in daily
        ]
        return t.Output(rows=rows, rejected=rejected)
