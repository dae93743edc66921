"""What every Python plugin needs between its code and the runner, written
by `runner plugin new` (keep it beside app.py; no need to edit it).

`column(group, i)` gives input column `i` of a group (WIT 0.3 passes rows
by column) as a list with one value per row, None where NULL:

    metrics, values = column(group, 0), column(group, 1)
    for at, metric, value in zip(group.ats, metrics, values): ...

`@guarded` on `aggregate` turns any exception into the runner's plugin
error, naming the exception's type, its message and where it was raised
(file:line in function, innermost first), and checks the output rows
before they cross into the runner, naming the column and the type of a
value that is not a `t.Value_*`. Without it, both reach the operator as
"wasm 'unreachable' instruction executed"."""

from componentize_py_types import Err
from wit_world.imports import types as t

# Frames of a traceback kept in the message: the innermost ones.
MAX_FRAMES = 6
# The runner keeps the first 2 KiB of an error; stay well inside it.
MAX_MESSAGE = 1500

VALUE_TYPES = (t.Value_Null, t.Value_Boolean, t.Value_Integer, t.Value_Float, t.Value_Text, t.Value_Timestamp, t.Value_Date)
EXACT_VALUE_TYPES = frozenset(VALUE_TYPES)


def column(group, i):
    """Input column `i` of `group`, one value per row, None where NULL."""
    c = group.columns[i]
    v = c.values
    if isinstance(v, t.ColumnValues_Text):
        distinct, rows = v.value.distinct, v.value.row
        if not c.nulls:
            return list(map(distinct.__getitem__, rows))
        n = len(distinct)
        return [distinct[k] if k < n else None for k in rows]
    values = list(v.value)
    for row in c.nulls:
        values[row] = None
    return values


def describe_error(error):
    """`KeyError: 'x' (at rules.py:12 in aggregate <- app.py:40 in aggregate)`."""
    frames = []
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append(f"{code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno} in {code.co_name}")
        tb = tb.tb_next
    # Innermost first: where it went wrong leads.
    frames = frames[::-1][:MAX_FRAMES]
    text = f"{type(error).__name__}: {error}"
    if frames:
        text += f" (at {' <- '.join(frames)})"
    return text[:MAX_MESSAGE]


def check_rows(rows, columns):
    """Raises TypeError naming the row, column and type of a value that is
    not a `t.Value_*`, or a row whose width is not the output's."""
    width = len(columns)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise TypeError(f"output row {i} has {len(row)} values; describe() declares {width} output columns")
        # The common case in one C-level pass; a miss is looked at closely.
        if all(map(EXACT_VALUE_TYPES.__contains__, map(type, row))):
            continue
        for column, value in zip(columns, row):
            if not isinstance(value, VALUE_TYPES):
                kind = column.kind.name.capitalize()
                raise TypeError(
                    f"output row {i}, column `{column.name}` ({column.kind.name.lower()}): expected t.Value_{kind}(...) "
                    f"or t.Value_Null(), got {type(value).__name__} {value!r:.40}"
                )


def guarded(aggregate):
    """Decorates `WitWorld.aggregate`: see the module's doc."""

    columns = []  # describe()'s output columns, asked for once

    def wrapper(self, group):
        try:
            output = aggregate(self, group)
            if not columns:
                columns.extend(self.describe().output)
            check_rows(output.rows, columns)
            return output
        except Err:
            raise
        except Exception as error:  # noqa: BLE001 - every error must reach the operator
            raise Err(t.PluginError(describe_error(error)))

    return wrapper
