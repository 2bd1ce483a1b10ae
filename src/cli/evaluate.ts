import { evaluateSchema } from '../options/evaluate.js';
import { describeOptions } from '../options/schema.js';
import { resolveEvaluateOptions, runEvaluation } from '../evaluate.js';
import { createLogger } from '../observe/log.js';
import { reportJson } from '../reports/write.js';
import { parseFlags } from './args.js';
import { createProgress } from './progress.js';
import { formatSummary } from './summary.js';
import { EXIT } from './main.js';

export const evaluateHelp = `Usage: metaguard evaluate --task PATH|NAME [--baseline PATH --candidate PATH] [options]

Runs baseline and candidate on generated cases, checks properties and relations, computes a confidence
interval on the difference of pass rates and decides. Exit codes: 0 adopt, 1 reject, 2 error.
A built-in task (top_k, median, sum) needs no --baseline or --candidate.

Options (flags > METAGUARD_* variables > the --config file > defaults; reference: docs/reference.md):
${describeOptions(evaluateSchema)}`;

export async function evaluateCommand(argv: string[]): Promise<number> {
  const { flags, positionals, help } = parseFlags(argv, evaluateSchema);
  if (help) {
    process.stdout.write(evaluateHelp + '\n');
    return 0;
  }
  if (positionals.length) {
    process.stderr.write(`metaguard: evaluate takes no positional arguments, got ${JSON.stringify(positionals[0])} (did you mean --task?)\n`);
    return EXIT.ERROR;
  }
  const options = resolveEvaluateOptions({ flags, env: process.env });
  const logger = createLogger({ level: options.logLevel, json: options.logJson, file: options.logFile });
  const progress = createProgress();
  let outcome;
  try {
    outcome = await runEvaluation(options, { logger, onProgress: progress.update });
  } finally {
    progress.end();
  }
  if (options.json) process.stdout.write(reportJson(outcome.report) + '\n');
  else process.stdout.write(formatSummary(outcome.report, outcome) + '\n');
  return outcome.report.decision.adopt ? EXIT.ADOPT : EXIT.REJECT;
}
