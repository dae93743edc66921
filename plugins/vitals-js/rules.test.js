// `node --test` in plugins/vitals-js: the rules, natively.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aggregate, unitMatches } from './rules.js';

const r = (id, at, metric, value, unit) => ({ id: BigInt(id), at: BigInt(at), metric, value, unit });
const one = (readings) => {
  const { daily } = aggregate(readings);
  assert.equal(daily.length, 1);
  return daily[0];
};
const close = (a, b) => assert.ok(Math.abs(a - b) < 1e-9, `${a} != ${b}`);

test('converts units to canonical', () => {
  const d = one([r(1, 1, 'temperature', 98.6, 'F'), r(2, 2, 'temperature', 37.0, 'celsius')]);
  assert.equal(d.unit, 'C');
  assert.equal(d.sampleCount, 2);
  close(d.minValue, 37.0);
  close(one([r(1, 1, 'systolic_bp', 16.0, 'kPa')]).maxValue, 16.0 * 7.50062);
  close(one([r(1, 1, 'spo2', 0.97, 'fraction')]).avgValue, 97.0);
  close(one([r(1, 1, 'weight', 150.0, 'lbs')]).lastValue, 150.0 * 0.45359237);
});

test('rejects bad units, values and implausible readings', () => {
  const d = one([
    r(1, 1, 'heart_rate', null, 'bpm'), r(2, 2, 'heart_rate', NaN, 'bpm'), r(3, 3, 'heart_rate', Infinity, 'bpm'),
    r(4, 4, 'heart_rate', 60.0, 'furlongs'), r(5, 5, 'heart_rate', 301.0, 'bpm'), r(6, 6, 'heart_rate', 300.0, 'BPM '),
  ]);
  assert.deepEqual([d.sampleCount, d.rejectedCount, d.maxValue], [1, 5, 300.0]);
});

test('non-ASCII units match only exactly', () => {
  assert.ok(unitMatches(' Kg', 'kg'));
  assert.ok(!unitMatches('KG\u0130', 'kgi'));
});

test('latest is the greatest timestamp, then the greatest id', () => {
  const d = one([r(9, 100, 'heart_rate', 70.0, 'bpm'), r(3, 200, 'heart_rate', 80.0, 'bpm'), r(4, 200, 'heart_rate', 90.0, 'bpm')]);
  assert.equal(d.lastValue, 90.0);
});

test('all rejected gives counts and null figures', () => {
  const d = one([r(1, 1, 'spo2', 10.0, '%')]);
  assert.deepEqual([d.sampleCount, d.rejectedCount, d.minValue, d.maxValue, d.avgValue, d.lastValue], [0, 1, null, null, null, null]);
});

test('unknown metrics are ignored and not counted', () => {
  assert.deepEqual(aggregate([r(1, 1, 'steps', 1000.0, 'count')]), { daily: [], rejected: 0 });
});

test('one row per metric seen, in spec order', () => {
  const { daily } = aggregate([r(1, 1, 'weight', 70.0, 'kg'), r(2, 2, 'heart_rate', 60.0, 'bpm')]);
  assert.deepEqual(daily.map((d) => d.metric), ['heart_rate', 'weight']);
});
