"""A Python test plugin with a module-level cache that is never cleared: a
group's count per metric includes the groups its instance served before.
Right on a fresh instance per group; caught by the runner's probe at load
when instances are shared. Built by `cargo xtask build-plugins` into
target/plugins/stateful_py.wasm."""

import wit_world
from wit_world.imports import types as t

from runner_glue import guarded

# The bug: module state outlives the group.
SEEN = {}


class WitWorld(wit_world.WitWorld):
    def describe(self) -> t.Description:
        return t.Description(
            name="stateful-py",
            version="0.1.0",
            input=[t.Column("metric", t.ColumnType.TEXT)],
            output=[t.Column("metric", t.ColumnType.TEXT), t.Column("sample_count", t.ColumnType.INTEGER)],
            key=["metric"],
        )

    @guarded
    def aggregate(self, group: t.Group) -> t.Output:
        mine = {}
        for row in group.rows:
            value = row.values[0]
            if isinstance(value, t.Value_Text):
                SEEN[value.value] = SEEN.get(value.value, 0) + 1
                mine[value.value] = SEEN[value.value]
        rows = [[t.Value_Text(m), t.Value_Integer(n)] for m, n in sorted(mine.items())]
        return t.Output(rows=rows, rejected=0)
