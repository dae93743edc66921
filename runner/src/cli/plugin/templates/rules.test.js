import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aggregate } from './rules.js';

test('sums the day\'s values and rejects bad ones', () => {
  assert.deepEqual(aggregate([1.5, 2.5, null, NaN]), { count: 2, rejected: 2, total: 4.0 });
});
