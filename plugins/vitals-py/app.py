"""The vitals plugin in Python: the WIT glue around `rules`. Built with
componentize-py (`cargo xtask build-plugins`)."""

import wit_world
from wit_world.imports import types as t

import rules
from runner_glue import column, guarded

VERSION = "1.1.0"

T = t.ColumnType


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
            # Rows come in (at, id) order, so the latest reading is the
            # last: no per-row ids, timestamps or days needed.
            row_fields=t.RowFields(0),
        )

    # Exceptions reach the operator by name. The output is built by column
    # here, not returned as rows for the glue to turn: this plugin is the
    # benchmark's, and the glue's checks cost a tenth of a group.
    @guarded
    def aggregate(self, group: t.Group) -> t.Output:
        daily, rejected = rules.aggregate_columns(
            group.ids, group.ats, column(group, 0), column(group, 1), column(group, 2)
        )
        n = len(daily)
        texts = [d.metric for d in daily] + [d.unit for d in daily]
        integers = [d.sample_count for d in daily] + [d.rejected_count for d in daily]
        floats = (
            [d.min_value for d in daily]
            + [d.max_value for d in daily]
            + [d.avg_value for d in daily]
            + [d.last_value for d in daily]
        )
        # The float columns are the 5th to 8th: a float's cell is 4n + its place.
        nulls = [4 * n + k for k, v in enumerate(floats) if v is None]
        if nulls:
            floats = [0.0 if v is None else v for v in floats]
        return t.Output(n, [], integers, floats, texts, nulls, rejected)
