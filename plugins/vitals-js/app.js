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

function aggregateGroup(group) {
  const { daily, rejected } = rules({ metrics: column(group, 0), values: column(group, 1), units: column(group, 2) });
  const rows = daily.map((d) => [
    d.metric, d.unit, d.sampleCount, d.rejectedCount, d.minValue, d.maxValue, d.avgValue, d.lastValue,
  ]);
  return { rows, rejected };
}

// Plain values out; wrong ones and errors reach the operator by name.
export const aggregate = guarded(aggregateGroup, describe);
