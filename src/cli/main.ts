/** `metaguard` command line: dispatches to a command, maps errors to one line and an exit code. */
import { isMetaguardError } from '../errors.js';
import { version } from '../version.js';
import { nearest } from '../util/text.js';
import { EXIT } from './exit.js';


const usage = `metaguard ${version}: may a candidate implementation replace a baseline?

Usage: metaguard <command> [options]

Commands:
  evaluate   run baseline and candidate on generated cases and decide (exit 0 adopt, 1 reject, 2 error)
  demo       run the built-in example evaluations on the embedded in-process queue
  worker     run a worker daemon that takes cases from a queue
  queue      inspect and operate a queue: stats, dlq list|retry|purge
  bench      measure the codec and the end-to-end throughput per batch size
  dashboard  serve a web dashboard of a queue: workers, evaluations, dead letters, reports

Run 'metaguard help <command>' (or 'metaguard <command> --help') for a command's options.
Reference of every flag, variable, key, metric and code: docs/reference.md.`;

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  evaluate: async () => (await import('./evaluate.js')).evaluateCommand,
  demo: async () => (await import('./demo.js')).demoCommand,
  worker: async () => (await import('./worker.js')).workerCommand,
  queue: async () => (await import('./queue.js')).queueCommand,
  bench: async () => (await import('./bench.js')).benchCommand,
  dashboard: async () => (await import('./dashboard.js')).dashboardCommand,
};

export async function main(argv: string[]): Promise<number> {
  let [name, ...rest] = argv;
  if (name === 'help' && rest[0] !== undefined) {
    // `metaguard help CMD` is `metaguard CMD --help`.
    [name, rest] = [rest[0], ['--help']];
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage + '\n');
    return name === undefined ? EXIT.ERROR : 0;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(version + '\n');
    return 0;
  }
  const load = commands[name];
  if (!load) {
    const guess = nearest(name, Object.keys(commands));
    process.stderr.write(`metaguard: unknown command ${JSON.stringify(name)} (${guess ? `did you mean ${guess}? ` : ''}commands: ${Object.keys(commands).join(', ')})\n`);
    return EXIT.ERROR;
  }
  const command = await load();
  try {
    return await command(rest);
  } catch (err) {
    return reportError(err, name === 'worker' ? EXIT.CONFIG : EXIT.ERROR);
  }
}

/** Prints one line for an error and returns the exit code. Errors without a code print their stack. */
export function reportError(err: unknown, codeForBadInput: number): number {
  if (isMetaguardError(err)) {
    process.stderr.write(`metaguard: ${err.message}\n`);
    const badInput = err.code === 'MG_ERR_INVALID_OPTION' || err.code === 'MG_ERR_UNKNOWN_OPTION' || err.code === 'MG_ERR_BACKEND_AUTH';
    return badInput ? codeForBadInput : EXIT.ERROR;
  }
  process.stderr.write(`metaguard: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return EXIT.ERROR;
}
