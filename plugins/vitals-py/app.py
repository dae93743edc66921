"""The vitals plugin in Python: the WIT glue around `rules`. Built with
componentize-py (`cargo xtask build-plugins`)."""

import wit_world
from wit_world.imports import types as t

import rules
from runner_glue import column, guarded

VERSION = "1.0.0"

T = t.ColumnType


Text, Integer, Float, Null = t.Value_Text, t.Value_Integer, t.Value_Float, t.Value_Null


def _float(x):
    return Null() if x is None else Float(x)


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
                Text(d.metric),
                Text(d.unit),
                Integer(d.sample_count),
                Integer(d.rejected_count),
                _float(d.min_value),
                _float(d.max_value),
                _float(d.avg_value),
                _float(d.last_value),
            ]
            for d in daily
        ]
        return t.Output(rows=rows, rejected=rejected)
