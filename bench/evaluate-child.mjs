// One evaluation in a process of its own, from the build (dist/), as `metaguard evaluate` runs it:
// no tsx loader in this process or its case threads. bench/throughput.ts spawns it with the evaluate
// option values as JSON in argv[2] and reads one JSON line: { seconds, cpu_ms } (cpu_ms: this whole
// process, every thread, from the start of the evaluation to its end).
const { runInProcess } = await import(new URL('../dist/src/bench/throughput.js', import.meta.url).href);
const { seconds, cpuMs } = await runInProcess(JSON.parse(process.argv[2]));
process.stdout.write(JSON.stringify({ seconds, cpu_ms: cpuMs }) + '\n');
