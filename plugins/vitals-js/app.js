// The vitals plugin in JavaScript: the WIT glue around `rules.js`. Built
// with componentize-js (`cargo xtask build-plugins`).

import { aggregateColumns as rules } from './rules.js';
import { column, guarded } from '../glue/runner_glue.js';

const VERSION = '1.0.0';

const NULL = { tag: 'null' };
const text = (x) => ({ tag: 'text', val: x });
const integer = (x) => ({ tag: 'integer', val: BigInt(x) });
const float = (x) => (x === null ? NULL : { tag: 'float', val: x });

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
  const { daily, rejected } = rules({ metrics: column(group, 0), values: column(group, 1), units: column(group, 2) });
  const rows = daily.map((d) => [
    text(d.metric), text(d.unit), integer(d.sampleCount), integer(d.rejectedCount),
    float(d.minValue), float(d.maxValue), float(d.avgValue), float(d.lastValue),
  ]);
  return { rows, rejected };
}

// Errors and wrong output values reach the operator by name.
export const aggregate = guarded(aggregateGroup, describe);
