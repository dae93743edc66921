"""What every Python plugin needs between its code and the runner, written
by `runner plugin new` (keep it beside app.py; no need to edit it).

`column(group, i)` gives input column `i` of a group (WIT 0.3 passes rows
by column) as a list with one value per row, None where NULL:

    metrics, values = column(group, 0), column(group, 1)
    for at, metric, value in zip(group.ats, metrics, values): ...

`@guarded` on `aggregate` lets it return its daily rows as plain Python
values, `return rows, rejected`: each row a list or tuple of the declared
output columns' values in declared order (str, int, float, bool, None for
NULL; a timestamp as microseconds, a date as days since 1970-01-01). It
checks them and sends them by column, as WIT 0.4 wants; a wrong value is
named by row, column and type. It also turns any exception into the
runner's plugin error, naming the exception's type, its message and where
it was raised (file:line in function, innermost first). Without it, both
reach the operator as "wasm 'unreachable' instruction executed". (An
`aggregate` that builds a `t.Output` itself is passed through; rows of
`t.Value_*`, as before 0.4, are checked as such.)"""

from itertools import chain

from componentize_py_types import Err
from wit_world.imports import types as t

# Frames of a traceback kept in the message: the innermost ones.
MAX_FRAMES = 6
# The runner keeps the first 2 KiB of an error; stay well inside it.
MAX_MESSAGE = 1500

# Built against WIT 0.4 or later: the output crosses by column.
COLUMNAR = "texts" in getattr(t.Output, "__dataclass_fields__", {})
NONE = type(None)
T = t.ColumnType
# The output's lists, in the order of `t.Output`'s fields: the declared
# types whose values each holds, the Python types accepted there, what a
# NULL's place holds, and whether it holds integers (range-checked) or
# floats (ints made floats).
LISTS = (
    ((T.BOOLEAN,), {bool, NONE}, False, None),
    ((T.INTEGER, T.TIMESTAMP, T.DATE), {int, NONE}, 0, "integers"),
    ((T.FLOAT,), {float, int, NONE}, 0.0, "floats"),
    ((T.TEXT,), {str, NONE}, "", None),
)
INT64 = 1 << 63
INT32 = 1 << 31

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


def plan(columns):
    """Which declared output columns (by index) fill each of the output's
    lists, then which are dates: worked out once from the declared columns."""
    return [[j for j, c in enumerate(columns) if c.kind in kinds] for kinds, *_ in LISTS] + [
        [j for j, c in enumerate(columns) if c.kind == T.DATE]
    ]


def by_column(rows, rejected, columns, planned):
    """`rows` (plain values, one list or tuple per row) as a WIT 0.4
    `t.Output`: each declared column's values appended to the list of its
    type (`planned` is `plan(columns)`). Raises TypeError naming the row,
    column and value that does not fit its declared column."""
    width = len(columns)
    if set(map(len, rows)) - {width}:
        i, row = next((i, row) for i, row in enumerate(rows) if len(row) != width)
        raise TypeError(f"output row {i} has {len(row)} values; describe() declares {width} output columns")
    n = len(rows)
    # C-level passes: rows into columns, columns into the lists, and each
    # list's types checked at once; a list that fails is looked at closely.
    values_of = list(zip(*rows)) if rows else [()] * width
    lists, nulls = [], []
    for (_, accepted, placeholder, numbers), which in zip(LISTS, planned[:4]):
        values = list(chain.from_iterable(map(values_of.__getitem__, which)))
        types = set(map(type, values))
        if not types <= accepted:
            raise TypeError(misfit(values_of, which, columns, accepted))
        if NONE in types:
            cells = chain.from_iterable(range(j * n, j * n + n) for j in which)
            nulls += [cell for cell, v in zip(cells, values) if v is None]
            values = [placeholder if v is None else v for v in values]
        if numbers == "integers" and values and not fits(values, values_of, planned[-1]):
            raise TypeError(misfit(values_of, which, columns, accepted))
        if int in types and numbers == "floats":
            values = [float(v) for v in values]
        lists.append(values)
    nulls.sort()
    return t.Output(n, *lists, nulls, rejected)


def fits(integers, values_of, dates):
    """Whether the integers (NULLs replaced) fit 64 bits, and the date
    columns' values 32."""
    if not (-INT64 <= min(integers) and max(integers) < INT64):
        return False
    return all(-INT32 <= v < INT32 for j in dates for v in values_of[j] if v is not None)


def misfit(values_of, which, columns, accepted):
    """The first value of the columns `which` that does not fit, named.
    (No name placeholder in braces in this file: `runner plugin new` fills those in.)"""
    for j in which:
        column, kind = columns[j].name, columns[j].kind
        bits = 31 if kind == T.DATE else 63
        for i, v in enumerate(values_of[j]):
            if type(v) not in accepted:
                return f"output row {i}, column `{column}` ({kind.name.lower()}): got {type(v).__name__} {v!r:.40}"
            if type(v) is int and kind != T.FLOAT and not -(1 << bits) <= v < 1 << bits:
                return f"output row {i}, column `{column}`: {v} does not fit {bits + 1} bits"
    return "output values do not fit their columns"


def guarded(aggregate):
    """Decorates `WitWorld.aggregate`: see the module's doc."""

    columns = []  # describe()'s output columns, asked for once
    planned = []  # and their plan

    def wrapper(self, group):
        try:
            output = aggregate(self, group)
            if not columns:
                columns.extend(self.describe().output)
                planned.extend(plan(columns) if COLUMNAR else [])
            if not isinstance(output, t.Output):
                rows, rejected = output
                return by_column(rows, rejected, columns, planned)
            if not COLUMNAR:
                check_rows(output.rows, columns)
            return output
        except Err:
            raise
        except Exception as error:  # noqa: BLE001 - every error must reach the operator
            raise Err(t.PluginError(describe_error(error)))

    return wrapper
