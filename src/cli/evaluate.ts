import { evaluateSchema } from '../options/evaluate.js';
import { describeOptions } from '../options/schema.js';
import { resolveEvaluateOptions, runEvaluation } from '../evaluate.js';
import { createLogger } from '../observe/log.js';
import { reportJson } from '../reports/write.js';
import { parseFlags } from './args.js';
import { createProgress } from './progress.js';
import { formatSummary } from './summary.js';
import { EXIT } from './exit.js';
import { isMetaguardError, MetaguardError } from '../errors.js';

export const evaluateHelp = `Usage: metaguard evaluate --task PATH|NAME [--baseline PATH --candidate PATH] [options]

Runs baseline and candidate on generated cases, checks properties and relations, computes a confidence
interval on the difference of pass rates and decides. A built-in task (top_k, median, sum) needs no
--baseline or --candidate.

Exit codes: 0 adopt, 1 reject, 2 error (bad input, a module that cannot be loaded, cases that could
not be delivered, --deadline-s passed, no queue worker alive), 130/143 stopped by SIGINT/SIGTERM (a
queue job is withdrawn first). A candidate case ending in E_TIMEOUT, E_OOM, E_THROW, E_OUTPUT or E_CRASH where
the baseline did not error on the same case counts toward --violation-cap like a violation.

Options (flags > METAGUARD_* variables > the --config file > defaults; reference: docs/reference.md):
${describeOptions(evaluateSchema)}`;

const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

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
  // The environment is read here, once, and passed down.
  const env = process.env;
  const options = resolveEvaluateOptions({ flags, env });
  const logger = createLogger({ level: options.logLevel, json: options.logJson, file: options.logFile });
  const progress = createProgress();
  // SIGINT/SIGTERM stop the run: the dispatcher withdraws a queue job, then we exit 130/143. A second
  // signal while that happens exits at once.
  const stop = new AbortController();
  let stoppedBy: keyof typeof SIGNAL_EXIT | undefined;
  const onSignal = (signal: keyof typeof SIGNAL_EXIT) => {
    if (stoppedBy) process.exit(SIGNAL_EXIT[signal]);
    stoppedBy = signal;
    stop.abort(new MetaguardError('MG_ERR_INTERRUPTED', `interrupted by ${signal}`));
  };
  const handlers = { SIGINT: () => onSignal('SIGINT'), SIGTERM: () => onSignal('SIGTERM') };
  process.on('SIGINT', handlers.SIGINT);
  process.on('SIGTERM', handlers.SIGTERM);
  let outcome;
  try {
    outcome = await runEvaluation(options, { env, logger, onProgress: progress.update, onWaiting: progress.waiting, signal: stop.signal });
  } catch (err) {
    progress.end();
    if (stoppedBy && isMetaguardError(err) && err.code === 'MG_ERR_INTERRUPTED') {
      process.stderr.write(`metaguard: ${err.message}\n`);
      return SIGNAL_EXIT[stoppedBy];
    }
    throw err;
  } finally {
    progress.end();
    process.off('SIGINT', handlers.SIGINT);
    process.off('SIGTERM', handlers.SIGTERM);
  }
  if (options.json) process.stdout.write(reportJson(outcome.report) + '\n');
  else process.stdout.write(formatSummary(outcome.report, outcome) + '\n');
  const { incomplete } = outcome.report;
  if (incomplete && !incomplete.decided_on_delivered) {
    process.stderr.write(
      `metaguard: verdict withheld: ${incomplete.undelivered_cases} of ${outcome.report.n} cases were not delivered (${incomplete.reason}); ` +
        `the report is written; --allow-incomplete decides on the delivered cases\n`,
    );
    return EXIT.ERROR;
  }
  return outcome.report.decision.adopt ? EXIT.ADOPT : EXIT.REJECT;
}
