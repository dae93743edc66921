// The `{name}` plugin: the WIT glue around `rules.js`. Build it with
// componentize-js (see README.md).
import { settings } from 'health:aggregation/host@0.4.0';
import { aggregate as rules } from './rules.js';
import { column, guarded } from './runner_glue.js';

export function describe() {
  return {
    name: '{name}',
    version: '0.1.0',
    input: [{ name: 'value', kind: 'float' }],
    output: [
      { name: 'reading_count', kind: 'integer' },
      { name: 'rejected_count', kind: 'integer' },
      { name: 'total', kind: 'float' },
    ],
    key: [],
    // Operators set these in `[jobs.<name>.settings]`; a setting without a
    // default must be set there.
    settings: [{ name: 'scale', kind: 'float', default: { tag: 'float', val: 1.0 }, doc: 'multiplies the total' }],
    // The per-row fields aggregate reads besides its columns: ids, ats
    // (timestamps), days (local days). Those left out arrive empty.
    rowFields: { ats: true, days: true },
  };
}

function aggregateGroup(group) {
  // Rows arrive by column: column(group, i) is input column i, one value
  // per row (null where NULL); group.ats and group.days give each row's
  // timestamp and local day, group.firstDay / lastDay / zone the bounds.
  const values = column(group, 0);
  const { count, rejected, total } = rules(values);
  const scale = new Map(settings()).get('scale').val;
  // One array per daily row, the declared output columns in order, as
  // plain values (null for NULL); the glue sends them by column.
  return { rows: [[count, rejected, total * scale]], rejected };
}

// Plain values out; wrong ones and errors reach the operator by name.
export const aggregate = guarded(aggregateGroup, describe);
