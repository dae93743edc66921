// The glue's output path, natively: `node --test` in this folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { byColumn, guarded } from './runner_glue.js';

const COLUMNS = [
  { name: 'metric', kind: 'text' },
  { name: 'count', kind: 'integer' },
  { name: 'low', kind: 'float' },
  { name: 'day', kind: 'date' },
  { name: 'ok', kind: 'boolean' },
];

test('each column joins the list of its type and nulls name their cells', () => {
  const out = byColumn([['hr', 3, null, 19000, true], ['bp', null, 2, 19001, null]], 4, COLUMNS);
  assert.equal(out.rows, 2);
  assert.deepEqual(out.texts, ['hr', 'bp']);
  // count, then day: integer and date columns share the list.
  assert.deepEqual(Array.from(out.integers), [3n, 0n, 19000n, 19001n]);
  assert.deepEqual(Array.from(out.floats), [0, 2]);
  assert.deepEqual(out.booleans, [true, false]);
  // Cells are column x rows + row: count of row 1, low of row 0, ok of row 1.
  assert.deepEqual(Array.from(out.nulls), [3, 4, 9]);
  assert.equal(out.rejected, 4);
});

test('a misfit is named by row, column and value', () => {
  const cases = [
    [[['hr', 1, 1, 1]], 'output row 0 has 4 values; describe() declares 5 output columns'],
    [[['hr', 1, 1, 1, true], ['bp', 1.5, 1, 1, true]], 'output row 1, column `count` (integer): got number 1.5'],
    [[['hr', 1, 'x', 1, true]], 'output row 0, column `low` (float): got string "x"'],
    [[['hr', 1, 1, 2 ** 40, true]], 'output row 0, column `day` (date): got number 1099511627776'],
    [[['hr', 2n ** 64n, 1, 1, true]], 'output row 0, column `count` (integer): got bigint 18446744073709551616n'],
  ];
  for (const [rows, message] of cases) assert.throws(() => byColumn(rows, 0, COLUMNS), { message });
});

test('guarded sends plain rows by column and names what is thrown', () => {
  const describe = () => ({ output: COLUMNS, rowFields: {} });
  const aggregate = guarded((group) => {
    if (group === 'bad') throw new RangeError('no such unit');
    return { rows: [['hr', 1n, 1.5, 2, false]], rejected: 0 };
  }, describe);
  assert.deepEqual(Array.from(aggregate('good').floats), [1.5]);
  assert.throws(() => aggregate('bad'), (e) => e.message.startsWith('RangeError: no such unit'));
});
