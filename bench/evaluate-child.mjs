// One evaluation in a process of its own, from the build (dist/), as `metaguard evaluate` runs it:
// no tsx loader in this process or its case threads. bench/throughput.ts spawns it with the evaluate
// option values as JSON in argv[2] and reads one JSON line: { seconds, cpu_ms } (cpu_ms: this whole
// process, every thread, from the start of runEvaluation to its end).
const { resolveEvaluateOptions, runEvaluation } = await import(new URL('../dist/src/evaluate.js', import.meta.url).href);
const values = JSON.parse(process.argv[2]);
const options = resolveEvaluateOptions({ values, env: {} });
const cpu0 = process.cpuUsage();
const started = performance.now();
await runEvaluation(options);
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpu0);
process.stdout.write(JSON.stringify({ seconds, cpu_ms: (cpu.user + cpu.system) / 1000 }) + '\n');
