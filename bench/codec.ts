/** Runs the codec benchmark of src/bench/codec.ts from the command line (see there). */
import { pathToFileURL } from 'node:url';
import { codecSpeedup, formatCodecBench, runCodecBench, type CodecBenchOptions } from '../src/bench/codec.ts';
import { nativeLoadError, tryLoadNativeBinding } from '../src/codec/native.ts';

async function main(argv: string[]): Promise<void> {
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const options: CodecBenchOptions = {
    batchSize: Number(flag('--batch') ?? 1000),
    timeMs: Number(flag('--time-ms') ?? 1500),
    rounds: Number(flag('--rounds') ?? 3),
    detail: true,
  };
  const rows = await runCodecBench(options);
  const speedup = codecSpeedup(rows);
  const rawSpeedup = codecSpeedup(rows, ' (no lz4)');
  if (argv.includes('--json')) {
    console.log(JSON.stringify({ rows, native_over_js_encode_decode: speedup ?? null }, null, 2));
    return;
  }
  console.log(`codec: ${options.batchSize}-case batches of ${rows[0].raw_bytes} raw bytes (Node ${process.versions.node})`);
  console.log(formatCodecBench(rows));
  if (speedup === undefined) {
    console.log(`native: unavailable (${nativeLoadError()?.message})`);
  } else {
    const binding = tryLoadNativeBinding()!;
    console.log(`native/js, encode+decode: ${speedup.toFixed(2)}x (lz4) ${rawSpeedup?.toFixed(2)}x (no lz4)   [liblz4 ${binding.lz4Version}, crc32c ${binding.crc32cImpl}]`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
