/**
 * Serialization of case payloads, measured side by side: V8's structured clone (v8.serialize), JSON,
 * and msgpackr as metaguard configures it (src/codec/serialize.ts). The value is a typical case:
 * { index, args: [array of 20 ints, int] } and a typical result.
 *
 *   node --import tsx bench/serialize.ts
 */
import v8 from 'node:v8';
import { Bench } from 'tinybench';
import { pack, unpack } from '../src/codec/serialize.ts';
import { printTable } from './table.ts';

const caseValue = { index: 12345, args: [Array.from({ length: 20 }, (_, i) => (i * 37) % 1000), 42] };
const resultValue = { index: 12345, passed: false, durationMs: 0.0123, propViolations: ['sorted'], output: '[1,2,3]' };

const rows: Record<string, string | number>[] = [];
for (const [what, value] of [['case', caseValue], ['result', resultValue]] as const) {
  const v8Bytes = v8.serialize(value);
  const jsonBytes = Buffer.from(JSON.stringify(value));
  const mpBytes = pack(value);
  const bench = new Bench({ time: 500, warmupTime: 100 });
  bench
    .add('v8 serialize', () => v8.serialize(value))
    .add('v8 deserialize', () => v8.deserialize(v8Bytes))
    .add('json stringify', () => Buffer.from(JSON.stringify(value)))
    .add('json parse', () => JSON.parse(jsonBytes.toString()))
    .add('msgpackr pack', () => pack(value))
    .add('msgpackr unpack', () => unpack(mpBytes));
  await bench.run();
  const size: Record<string, number> = { v8: v8Bytes.length, json: jsonBytes.length, msgpackr: mpBytes.length };
  for (const t of bench.tasks) {
    const r = t.result as { period?: number };
    rows.push({ value: what, op: t.name, ops_per_sec: Math.round(1000 / (r.period ?? Infinity)), bytes: size[t.name.split(' ')[0]] });
  }
}
printTable('Serialization of one payload (ops/s, higher is better)', rows);
