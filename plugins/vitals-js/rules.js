// The vitals rules of docs/aggregation-spec.md in plain JavaScript: unit
// conversion, plausibility, and the daily figures. No WebAssembly here, so
// `node --test` tests them as they are.

const KPA_TO_MMHG = 7.50062;
const LB_TO_KG = 0.45359237;

const identity = (v) => v;
const factor = (f) => (v) => v * f;
const fahrenheitToCelsius = (v) => ((v - 32.0) * 5.0) / 9.0;

/** The spec's metric table, in output order. */
export const METRICS = [
  { name: 'heart_rate', canonical: 'bpm', units: { bpm: identity }, low: 20, high: 300 },
  { name: 'systolic_bp', canonical: 'mmHg', units: { mmHg: identity, kPa: factor(KPA_TO_MMHG) }, low: 50, high: 300 },
  { name: 'diastolic_bp', canonical: 'mmHg', units: { mmHg: identity, kPa: factor(KPA_TO_MMHG) }, low: 20, high: 200 },
  { name: 'spo2', canonical: '%', units: { '%': identity, fraction: factor(100) }, low: 50, high: 100 },
  {
    name: 'temperature',
    canonical: 'C',
    units: { C: identity, celsius: identity, F: fahrenheitToCelsius, fahrenheit: fahrenheitToCelsius },
    low: 25,
    high: 45,
  },
  { name: 'weight', canonical: 'kg', units: { kg: identity, lb: factor(LB_TO_KG), lbs: factor(LB_TO_KG) }, low: 1, high: 500 },
  { name: 'respiratory_rate', canonical: 'breaths/min', units: { 'breaths/min': identity }, low: 1, high: 100 },
];

const asciiLower = (s) => s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
const normalUnit = (u) => asciiLower(u.trim());

/** Units match after trimming, ignoring ASCII case only (as the Rust kit). */
export function unitMatches(given, accepted) {
  return normalUnit(given) === normalUnit(accepted);
}

// Each metric's conversions by normalised unit, and each metric's place by
// name: built once, when the module loads (componentize-js runs that at
// build time), so a reading costs two map lookups, not a regex per unit.
// The first accepted unit wins when two normalise alike, as in `find`.
const CONVERSIONS = new Map(
  METRICS.map((m) => {
    const byUnit = new Map();
    for (const [unit, convert] of Object.entries(m.units)) {
      if (!byUnit.has(normalUnit(unit))) byUnit.set(normalUnit(unit), convert);
    }
    return [m, byUnit];
  }),
);
const PLACE = new Map(METRICS.map((m, i) => [m.name, i]));

/**
 * One row per known metric seen that day, and the rows rejected. Readings
 * are `{id, at, metric, value, unit}` (`id` and `at` BigInt), in any order;
 * readings of unknown metrics are ignored, not counted.
 */
export function aggregate(readings) {
  const ordered = [...readings].sort((a, b) => (a.at < b.at || (a.at === b.at && a.id < b.id) ? -1 : 1));
  const column = (name) => ordered.map((r) => r[name]);
  return aggregateColumns({
    ids: column('id'), ats: column('at'), metrics: column('metric'), values: column('value'), units: column('unit'),
  });
}

/**
 * The same over a group's columns (as the runner passes them, WIT 0.3):
 * `metrics`, `values` and `units` one entry per row, null where NULL, the
 * rows ordered by (at, id) as the runner passes them, so that a metric's
 * latest accepted reading is its last one. No object is made per reading,
 * and no BigInt is touched (`ids` and `ats` are not read).
 */
export function aggregateColumns({ metrics, values, units }) {
  // One pass sorts the rows by metric (their indexes).
  const byMetric = METRICS.map(() => []);
  for (let i = 0; i < metrics.length; i += 1) {
    const place = PLACE.get(metrics[i]);
    if (place !== undefined) byMetric[place].push(i);
  }
  const out = [];
  let rejected = 0;
  for (let place = 0; place < METRICS.length; place += 1) {
    const mine = byMetric[place];
    if (mine.length === 0) continue;
    const metric = METRICS[place];
    const { low, high } = metric;
    // A day has few distinct units: each is looked up once, to its
    // conversion (null when the metric does not accept it).
    const conversions = CONVERSIONS.get(metric);
    const byUnit = new Map();
    let count = 0;
    let total = 0;
    let min = Infinity;
    let max = -Infinity;
    let last = null;
    for (let k = 0; k < mine.length; k += 1) {
      const i = mine[k];
      const value = values[i];
      const unit = units[i];
      if (value === null || unit === null) continue;
      let convert = byUnit.get(unit);
      if (convert === undefined) {
        convert = conversions.get(normalUnit(unit)) ?? null;
        byUnit.set(unit, convert);
      }
      if (convert === null) continue;
      const v = convert === identity ? value : convert(value);
      // NaN fails both comparisons; infinities fail one.
      if (!(v >= low && v <= high)) continue;
      count += 1;
      total += v;
      if (v < min) min = v;
      if (v > max) max = v;
      last = v;
    }
    const bad = mine.length - count;
    out.push({
      metric: metric.name,
      unit: metric.canonical,
      sampleCount: count,
      rejectedCount: bad,
      minValue: count > 0 ? min : null,
      maxValue: count > 0 ? max : null,
      avgValue: count > 0 ? total / count : null,
      lastValue: last,
    });
    rejected += bad;
  }
  return { daily: out, rejected };
}
