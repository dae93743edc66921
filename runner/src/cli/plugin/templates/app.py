"""The `{name}` plugin: the WIT glue around `rules`. Build it with
componentize-py (see README.md)."""

import wit_world
from wit_world.imports import host
from wit_world.imports import types as t

import rules
from runner_glue import column, guarded


class WitWorld(wit_world.WitWorld):
    def describe(self) -> t.Description:
        return t.Description(
            name="{name}",
            version="0.1.0",
            input=[t.Column("value", t.ColumnType.FLOAT)],
            output=[
                t.Column("reading_count", t.ColumnType.INTEGER),
                t.Column("rejected_count", t.ColumnType.INTEGER),
                t.Column("total", t.ColumnType.FLOAT),
            ],
            key=[],
            # Operators set these in `[jobs.<name>.settings]`; a setting
            # whose default is None must be set there.
            settings=[t.Setting("scale", t.SettingType.FLOAT, t.Value_Float(1.0), "multiplies the total")],
            # The per-row fields aggregate reads besides its columns:
            # t.RowFields.IDS, .ATS (timestamps), .DAYS (local days), or
            # t.RowFields(0) for none. Those left out arrive empty.
            row_fields=t.RowFields.ATS | t.RowFields.DAYS,
        )

    # Plain values out; wrong ones and exceptions reach the operator by name.
    @guarded
    def aggregate(self, group: t.Group):
        # Rows arrive by column: column(group, i) is input column i, one
        # value per row (None where NULL); group.ats and group.days give each
        # row's timestamp and local day, group.first_day / last_day / zone
        # the group's bounds.
        values = column(group, 0)
        count, rejected, total = rules.aggregate(values)
        scale = dict(host.settings())["scale"].value
        # One row per daily row, the declared output columns in order, as
        # plain values (None for NULL); the glue sends them by column.
        return [(count, rejected, float(total) * scale)], rejected
