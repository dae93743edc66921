// The `{name}` rules in plain JavaScript: per user and day, how many
// readings there were and the sum of their values, rejecting null and
// non-finite ones. Replace them with your own; `node --test` tests them.

/** {count, rejected, total} of one day's values. */
export function aggregate(values) {
  const good = values.filter((v) => v !== null && Number.isFinite(v));
  return { count: good.length, rejected: values.length - good.length, total: good.reduce((a, b) => a + b, 0) };
}
