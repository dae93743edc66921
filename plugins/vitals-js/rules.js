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

/** The canonical value of an acceptable reading, or null when rejected.
 * `normal` normalises a unit (a caching one saves work over many readings). */
export function canonicalValue(metric, value, unit, normal = normalUnit) {
  if (value === null || !Number.isFinite(value) || unit === null) return null;
  const convert = CONVERSIONS.get(metric).get(normal(unit));
  if (convert === undefined) return null;
  const canonical = convert(value);
  return canonical >= metric.low && canonical <= metric.high ? canonical : null;
}

/**
 * One row per known metric seen that day, and the rows rejected. Readings
 * are `{id, at, metric, value, unit}` (`id` and `at` BigInt); readings of
 * unknown metrics are ignored, not counted.
 */
export function aggregate(readings) {
  const column = (name) => readings.map((r) => r[name]);
  return aggregateColumns({
    ids: column('id'), ats: column('at'), metrics: column('metric'), values: column('value'), units: column('unit'),
  });
}

/**
 * The same over a group's columns (as the runner passes them, WIT 0.3):
 * `ids` and `ats` BigInts, `metrics`, `values` and `units` one entry per
 * row, null where NULL. No object is made per reading.
 */
export function aggregateColumns({ ids, ats, metrics, values, units }) {
  // One pass sorts the rows by metric (their indexes); a day has few
  // distinct units, so each is normalised once.
  const byMetric = METRICS.map(() => []);
  for (let i = 0; i < metrics.length; i += 1) {
    const place = PLACE.get(metrics[i]);
    if (place !== undefined) byMetric[place].push(i);
  }
  const normalised = new Map();
  const normal = (unit) => {
    let n = normalised.get(unit);
    if (n === undefined) {
      n = normalUnit(unit);
      normalised.set(unit, n);
    }
    return n;
  };
  const out = [];
  let rejected = 0;
  METRICS.forEach((metric, place) => {
    const mine = byMetric[place];
    if (mine.length === 0) return;
    const daily = {
      metric: metric.name, unit: metric.canonical, sampleCount: 0, rejectedCount: 0,
      minValue: null, maxValue: null, avgValue: null, lastValue: null,
    };
    let total = 0;
    let latest = -1; // the accepted row with the greatest (at, id)
    let latestValue = null;
    for (const i of mine) {
      const v = canonicalValue(metric, values[i], units[i], normal);
      if (v === null) {
        daily.rejectedCount += 1;
        continue;
      }
      daily.sampleCount += 1;
      total += v;
      daily.minValue = daily.minValue === null ? v : Math.min(daily.minValue, v);
      daily.maxValue = daily.maxValue === null ? v : Math.max(daily.maxValue, v);
      if (latest < 0 || ats[i] > ats[latest] || (ats[i] === ats[latest] && ids[i] >= ids[latest])) {
        latest = i;
        latestValue = v;
      }
    }
    if (daily.sampleCount > 0) {
      daily.avgValue = total / daily.sampleCount;
      daily.lastValue = latestValue;
    }
    rejected += daily.rejectedCount;
    out.push(daily);
  });
  return { daily: out, rejected };
}
