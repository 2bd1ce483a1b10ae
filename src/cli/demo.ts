/** `metaguard demo`: the built-in example evaluations on the embedded in-process queue. */
import { resolveEvaluateOptions, runEvaluation } from '../evaluate.js';
import { createLogger } from '../observe/log.js';
import { builtinTask } from '../task/builtin.js';
import { parseFlags } from './args.js';
import { formatSummary } from './summary.js';
import { EXIT } from './exit.js';

const demoSchema = {} as const;

export async function demoCommand(argv: string[]): Promise<number> {
  const { help, positionals } = parseFlags(argv, demoSchema);
  if (help) {
    process.stdout.write(
      'Usage: metaguard demo\n\nRuns the built-in tasks top_k (the candidate should be adopted) and median (the candidate is\n' +
        'worse and should be rejected) through the embedded in-process queue, with two local workers. No server needed.\n',
    );
    return 0;
  }
  if (positionals.length) throw new Error(`demo takes no arguments, got ${positionals[0]}`);
  const logger = createLogger({});
  let allAsExpected = true;
  for (const name of ['top_k', 'median']) {
    const expected = builtinTask(name)!.expectAdopt;
    const options = resolveEvaluateOptions({
      values: { task: name, dispatcher: 'queue', queueConfig: { backend: 'memory', spawn_local_workers: 2 } },
      env: {},
    });
    const outcome = await runEvaluation(options, { logger, env: process.env });
    process.stdout.write(formatSummary(outcome.report, outcome) + `\n  expected    ${expected ? 'adopt' : 'reject'}\n\n`);
    if (outcome.report.decision.adopt !== expected) allAsExpected = false;
  }
  process.stdout.write(allAsExpected ? 'demo: both verdicts as expected\n' : 'demo: a verdict differs from the expected one\n');
  return allAsExpected ? 0 : EXIT.REJECT;
}
