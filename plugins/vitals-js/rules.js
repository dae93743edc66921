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

/** Units match after trimming, ignoring ASCII case only (as the Rust kit). */
export function unitMatches(given, accepted) {
  return asciiLower(given.trim()) === asciiLower(accepted.trim());
}

/** The canonical value of an acceptable reading, or null when rejected. */
export function canonicalValue(metric, value, unit) {
  if (value === null || !Number.isFinite(value) || unit === null) return null;
  const accepted = Object.keys(metric.units).find((u) => unitMatches(unit, u));
  if (accepted === undefined) return null;
  const canonical = metric.units[accepted](value);
  return canonical >= metric.low && canonical <= metric.high ? canonical : null;
}

/**
 * One row per known metric seen that day, and the rows rejected. Readings
 * are `{id, at, metric, value, unit}` (`id` and `at` BigInt); readings of
 * unknown metrics are ignored, not counted.
 */
export function aggregate(readings) {
  const out = [];
  let rejected = 0;
  for (const metric of METRICS) {
    const mine = readings.filter((r) => r.metric === metric.name);
    if (mine.length === 0) continue;
    const daily = {
      metric: metric.name, unit: metric.canonical, sampleCount: 0, rejectedCount: 0,
      minValue: null, maxValue: null, avgValue: null, lastValue: null,
    };
    let total = 0;
    let latest = null; // {at, id, value}
    for (const r of mine) {
      const v = canonicalValue(metric, r.value, r.unit);
      if (v === null) {
        daily.rejectedCount += 1;
        continue;
      }
      daily.sampleCount += 1;
      total += v;
      daily.minValue = daily.minValue === null ? v : Math.min(daily.minValue, v);
      daily.maxValue = daily.maxValue === null ? v : Math.max(daily.maxValue, v);
      if (latest === null || r.at > latest.at || (r.at === latest.at && r.id >= latest.id)) {
        latest = { at: r.at, id: r.id, value: v };
      }
    }
    if (daily.sampleCount > 0) {
      daily.avgValue = total / daily.sampleCount;
      daily.lastValue = latest.value;
    }
    rejected += daily.rejectedCount;
    out.push(daily);
  }
  return { daily: out, rejected };
}
