// What every JavaScript plugin needs between its code and the runner,
// written by `runner plugin new` (keep it beside app.js; no need to edit it).
//
// `column(group, i)` gives input column `i` of a group (WIT 0.3 passes rows
// by column), one value per row, null where NULL: an array, or (a column
// of numbers without NULLs) the typed array itself.
//
// `guarded(aggregate, describe)` turns anything thrown into the runner's
// plugin error, naming the error's type, its message and where it was
// thrown (innermost frames first), and checks the output rows before they
// cross into the runner, naming the column and the type of a value that is
// not a `{ tag, val }` variant. Without it, a wrong value reaches the
// operator as "wasm 'unreachable' instruction executed".

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
        const { name, kind } = columns[j];
        const shown = typeof value === 'bigint' ? `${value}n` : JSON.stringify(value);
        throw new TypeError(`output row ${i}, column \`${name}\` (${kind}): expected { tag: '${kind}', val: … } or { tag: 'null' }, got ${typeof value} ${String(shown).slice(0, 40)}`);
      }
    }
  }
}

/** Wraps an `aggregate` export: see the module's comment. */
export function guarded(aggregate, describe) {
  let columns = null; // describe()'s output columns, asked for once
  return (group) => {
    try {
      const output = aggregate(group);
      columns ??= describe().output;
      checkRows(output.rows, columns);
      return output;
    } catch (error) {
      // A plugin error's payload: the record the WIT declares.
      throw { message: describeError(error) };
    }
  };
}
