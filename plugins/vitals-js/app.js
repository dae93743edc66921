// The vitals plugin in JavaScript: the WIT glue around `rules.js`. Built
// with componentize-js (`cargo xtask build-plugins`).

import { aggregate as rules } from './rules.js';
import { guarded } from '../glue/runner_glue.js';

const VERSION = '1.0.0';

const text = (v) => (v.tag === 'text' ? v.val : null);
const float = (v) => (v.tag === 'float' ? v.val : v.tag === 'integer' ? Number(v.val) : null);
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
  };
}

function aggregateGroup(group) {
  const readings = group.rows.map((r) => ({
    id: r.id, at: r.at, metric: text(r.values[0]), value: float(r.values[1]), unit: text(r.values[2]),
  }));
  const { daily, rejected } = rules(readings);
  const rows = daily.map((d) => [
    value(d.metric, 'text'), value(d.unit, 'text'), value(d.sampleCount, 'integer'), value(d.rejectedCount, 'integer'),
    value(d.minValue, 'float'), value(d.maxValue, 'float'), value(d.avgValue, 'float'), value(d.lastValue, 'float'),
  ]);
  return { rows, rejected };
}

// Errors and wrong output values reach the operator by name.
export const aggregate = guarded(aggregateGroup, describe);
