// What every JavaScript plugin needs between its code and the runner,
// written by `runner plugin new` (keep it beside app.js; no need to edit it).
//
// `column(group, i)` gives input column `i` of a group (WIT 0.3 passes rows
// by column), one value per row, null where NULL: an array, or (a column
// of numbers without NULLs) the typed array itself.
//
// `guarded(aggregate, describe)` lets `aggregate` return its daily rows as
// plain values, `{ rows, rejected }`: each row an array of the declared
// output columns' values in declared order (string, number, bigint,
// boolean, null for NULL; a timestamp as microseconds, a date as days since
// 1970-01-01). It checks them and sends them by column, as WIT 0.4 wants,
// naming a wrong value's row, column and type. It also turns anything
// thrown into the runner's plugin error, naming the error's type, its
// message and where it was thrown (innermost frames first). Without it,
// both reach the operator as "wasm 'unreachable' instruction executed".
// (An output already by column, `rows` a count, is passed through; a
// plugin built against a version before 0.4, whose `describe()` has no
// `rowFields`, returns rows of `{ tag, val }` variants: those are checked
// as such.)

// (No name placeholder in braces in this file: `runner plugin new` fills those in.)

// Frames of a stack kept in the message: the innermost ones.
const MAX_FRAMES = 6;
// The runner keeps the first 2 KiB of an error; stay well inside it.
const MAX_MESSAGE = 1500;
const TAGS = new Set(['null', 'boolean', 'integer', 'float', 'text', 'timestamp', 'date']);

/** Input column `i` of `group`, one value per row, null where NULL. */
export function column(group, i) {
  const { values, nulls } = group.columns[i];
  if (values.tag === 'text') {
    const { distinct, row } = values.val;
    const out = new Array(row.length);
    for (let k = 0; k < row.length; k += 1) out[k] = row[k] < distinct.length ? distinct[row[k]] : null;
    return out;
  }
  if (nulls.length === 0) return values.val;
  const out = Array.from(values.val);
  for (const n of nulls) out[n] = null;
  return out;
}

/** `TypeError: x is undefined (at aggregate@app.js:25:3 <- …)`. */
export function describeError(error) {
  if (!(error instanceof Error)) return `thrown: ${String(error)}`.slice(0, MAX_MESSAGE);
  const frames = String(error.stack || '')
    .split('\n')
    .map((line) => {
      // `function@/path/to/file.js:line:column`: the function and the file's own name.
      const at = line.trim().lastIndexOf('@');
      const [fn, file] = [line.trim().slice(0, Math.max(at, 0)), line.trim().slice(at + 1).replace(/^.*\//, '')];
      return fn ? `${fn}@${file}` : file;
    })
    .filter((line) => line.length > 0)
    .slice(0, MAX_FRAMES);
  const where = frames.length > 0 ? ` (at ${frames.join(' <- ')})` : '';
  return `${error.name}: ${error.message}${where}`.slice(0, MAX_MESSAGE);
}

/** Throws a TypeError naming the row, column and type of a value that is
 * not a variant, or a row whose width is not the output's. */
export function checkRows(rows, columns) {
  for (let i = 0; i < rows.length; i += 1) {
    const row = rows[i];
    if (!Array.isArray(row) || row.length !== columns.length) {
      throw new TypeError(`output row ${i} has ${Array.isArray(row) ? row.length : 'no'} values; describe() declares ${columns.length} output columns`);
    }
    for (let j = 0; j < row.length; j += 1) {
      const value = row[j];
      const ok = value !== null && typeof value === 'object' && TAGS.has(value.tag) && (value.tag === 'null' || 'val' in value);
      if (!ok) {
        const { name: column, kind } = columns[j];
        const shown = typeof value === 'bigint' ? `${value}n` : JSON.stringify(value);
        throw new TypeError(`output row ${i}, column \`${column}\` (${kind}): expected { tag: '${kind}', val: … } or { tag: 'null' }, got ${typeof value} ${String(shown).slice(0, 40)}`);
      }
    }
  }
}

const INT64 = [-(2n ** 63n), 2n ** 63n - 1n];

// Per declared output type: the list its values join, whether a value
// fits, how it is stored, and what a NULL's place holds.
const OUTPUT_KINDS = {
  boolean: { list: 'booleans', fits: (v) => typeof v === 'boolean', placeholder: false },
  integer: { list: 'integers', fits: fitsInt64, placeholder: 0n, convert: BigInt },
  timestamp: { list: 'integers', fits: fitsInt64, placeholder: 0n, convert: BigInt },
  date: { list: 'integers', fits: (v) => Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31, placeholder: 0n, convert: BigInt },
  float: { list: 'floats', fits: (v) => typeof v === 'number', placeholder: 0 },
  text: { list: 'texts', fits: (v) => typeof v === 'string', placeholder: '' },
};

function fitsInt64(v) {
  if (typeof v === 'number') return Number.isSafeInteger(v);
  return typeof v === 'bigint' && v >= INT64[0] && v <= INT64[1];
}

/** `rows` (plain values, one array per row) as a WIT 0.4 output: each
 * column's values appended to the list of its type. Throws a TypeError
 * naming the row, column and value that does not fit its declared column. */
export function byColumn(rows, rejected, columns) {
  const n = rows.length;
  for (let i = 0; i < n; i += 1) {
    const row = rows[i];
    if (!Array.isArray(row) || row.length !== columns.length) {
      throw new TypeError(`output row ${i} has ${Array.isArray(row) ? row.length : 'no'} values; describe() declares ${columns.length} output columns`);
    }
  }
  const lists = { booleans: [], integers: [], floats: [], texts: [] };
  const nulls = [];
  for (let j = 0; j < columns.length; j += 1) {
    const { name: column, kind } = columns[j];
    const { list, fits, placeholder, convert } = OUTPUT_KINDS[kind];
    const out = lists[list];
    for (let i = 0; i < n; i += 1) {
      const v = rows[i][j];
      if (v === null || v === undefined) {
        nulls.push(j * n + i);
        out.push(placeholder);
      } else if (fits(v)) {
        out.push(convert === undefined ? v : convert(v));
      } else {
        const shown = typeof v === 'bigint' ? `${v}n` : JSON.stringify(v);
        throw new TypeError(`output row ${i}, column \`${column}\` (${kind}): got ${typeof v} ${String(shown).slice(0, 40)}`);
      }
    }
  }
  return {
    rows: n,
    booleans: lists.booleans,
    integers: BigInt64Array.from(lists.integers),
    floats: Float64Array.from(lists.floats),
    texts: lists.texts,
    nulls: Uint32Array.from(nulls),
    rejected,
  };
}

/** Wraps an `aggregate` export: see the module's comment. */
export function guarded(aggregate, describe) {
  let described = null; // describe(), asked for once
  return (group) => {
    try {
      const output = aggregate(group);
      described ??= describe();
      // Already by column (`rows` a count): the plugin built the lists itself.
      if (typeof output.rows === 'number') return output;
      if ('rowFields' in described) return byColumn(output.rows, output.rejected, described.output);
      checkRows(output.rows, described.output);
      return output;
    } catch (error) {
      // A plugin error's payload: the record the WIT declares.
      throw { message: describeError(error) };
    }
  };
}
