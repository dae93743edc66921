// The vitals plugin in JavaScript: the WIT glue around `rules.js`. Built
// with componentize-js (`cargo xtask build-plugins`).

import { aggregateColumns as rules } from './rules.js';
import { column, guarded } from '../glue/runner_glue.js';

const VERSION = '1.1.0';

export function describe() {
  const column = (name, kind) => ({ name, kind });
  return {
    name: 'vitals-js',
    version: VERSION,
    input: [column('metric', 'text'), column('value', 'float'), column('unit', 'text')],
    output: [
      column('metric', 'text'), column('unit', 'text'), column('sample_count', 'integer'), column('rejected_count', 'integer'),
      column('min_value', 'float'), column('max_value', 'float'), column('avg_value', 'float'), column('last_value', 'float'),
    ],
    key: ['metric'],
    settings: [],
    // Rows come in (at, id) order, so the latest reading is the last: no
    // per-row ids, timestamps or days needed.
    rowFields: {},
  };
}

// The output is built by column here, not returned as rows for the glue
// to turn: this plugin is the benchmark's, and the glue's generic checks
// cost a tenth of a group.
function aggregateGroup(group) {
  const { daily, rejected } = rules({ metrics: column(group, 0), values: column(group, 1), units: column(group, 2) });
  const n = daily.length;
  const texts = new Array(2 * n);
  const integers = new BigInt64Array(2 * n);
  for (let i = 0; i < n; i += 1) {
    const d = daily[i];
    texts[i] = d.metric;
    texts[n + i] = d.unit;
    integers[i] = BigInt(d.sampleCount);
    integers[n + i] = BigInt(d.rejectedCount);
  }
  // The float columns are the 5th to 8th: a float's cell is 4n + its place.
  const floats = new Float64Array(4 * n);
  const nulls = [];
  const fields = ['minValue', 'maxValue', 'avgValue', 'lastValue'];
  for (let c = 0; c < 4; c += 1) {
    for (let i = 0; i < n; i += 1) {
      const v = daily[i][fields[c]];
      if (v === null) nulls.push(4 * n + c * n + i);
      else floats[c * n + i] = v;
    }
  }
  return { rows: n, booleans: [], integers, floats, texts, nulls: Uint32Array.from(nulls), rejected };
}

// Errors reach the operator by name.
export const aggregate = guarded(aggregateGroup, describe);
