// The vitals plugin in JavaScript: the WIT glue around `rules.js`. Built
// with componentize-js (`cargo xtask build-plugins`).

import { aggregateColumns as rules } from './rules.js';
import { column, guarded } from '../glue/runner_glue.js';

const VERSION = '1.0.0';

const value = (x, kind) => (x === null ? { tag: 'null' } : kind === 'integer' ? { tag: 'integer', val: BigInt(x) } : { tag: kind, val: x });

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
  };
}

function aggregateGroup(group) {
  const { ids, ats } = group;
  const { daily, rejected } = rules({
    ids, ats, metrics: column(group, 0), values: column(group, 1), units: column(group, 2),
  });
  const rows = daily.map((d) => [
    value(d.metric, 'text'), value(d.unit, 'text'), value(d.sampleCount, 'integer'), value(d.rejectedCount, 'integer'),
    value(d.minValue, 'float'), value(d.maxValue, 'float'), value(d.avgValue, 'float'), value(d.lastValue, 'float'),
  ]);
  return { rows, rejected };
}

// Errors and wrong output values reach the operator by name.
export const aggregate = guarded(aggregateGroup, describe);
