/** `metaguard queue stats | dlq list | dlq retry [ID|--all] | dlq purge`. */
import { createInterface } from 'node:readline/promises';
import { invalidOption } from '../errors.js';
import { refuseMemoryQueue, requireQueueConfig, resolveWithConfigFile } from '../options/config-file.js';
import { describeOptions } from '../options/schema.js';
import { queueSchema } from '../options/queue-command.js';
import { validateQueueConfig } from '../options/queue.js';
import { createBackend } from '../queue/index.js';
import { priorities } from '../queue/types.js';
import { parseFlags } from './args.js';

const help = `Usage: metaguard queue stats
       metaguard queue dlq list
       metaguard queue dlq retry ID | --all
       metaguard queue dlq purge [--yes]

Exit codes: 0 done, 1 dlq retry found no dead-lettered batch with that ID (or purge was declined),
2 bad input.

Options:
${describeOptions(queueSchema)}`;

export async function queueCommand(argv: string[]): Promise<number> {
  const { flags, positionals, help: wantHelp } = parseFlags(argv, queueSchema);
  if (wantHelp || positionals.length === 0) {
    process.stdout.write(help + '\n');
    return wantHelp ? 0 : 2;
  }
  const options = resolveWithConfigFile(queueSchema, { flags, env: process.env });
  requireQueueConfig(options);
  const config = validateQueueConfig(options.queueConfig ?? {}, options.backend ? { backend: options.backend as 'redis' } : {});
  refuseMemoryQueue(config.backend, options.backend !== undefined);
  const [verb, sub, arg] = positionals;
  const backend = await createBackend(config);
  await backend.connect();
  const print = (value: unknown, text: () => string) => process.stdout.write((options.json ? JSON.stringify(value, null, 2) : text()) + '\n');
  try {
    if (verb === 'stats') {
      const s = await backend.stats();
      // The backends count batches (one message each); the names say so. Case counts: the workers' metrics.
      const out = {
        queue: config.queue,
        backend: config.backend,
        pending_batches: s.pending,
        inflight_batches: s.inflight,
        delayed_batches: s.delayed,
        dead_letter_batches: s.dead,
        batches_dispatched_total: s.dispatched,
        batches_completed_total: s.completed,
        batches_requeued_total: s.requeued,
        workers: s.workers.map((w) => ({ ...w, cases_completed: w.casesCompleted ?? 0 })),
      };
      print(out, () =>
        [
          `queue ${config.queue} (${config.backend}); counts are batches unless they say cases`,
          `  pending batches    ${priorities.map((p) => `${p}=${s.pending[p]}`).join(' ')}`,
          `  in-flight batches  ${s.inflight}   delayed ${s.delayed}   dead-lettered ${s.dead}`,
          `  batch totals       dispatched ${s.dispatched}   completed ${s.completed}   requeued ${s.requeued}`,
          `  workers            ${s.workers.length} active`,
          ...s.workers.map((w) => `    ${w.workerId}  threads=${w.threads}  cases completed=${w.casesCompleted ?? 0}  state=${w.state ?? 'running'}  last heartbeat ${w.lastHeartbeat ? new Date(w.lastHeartbeat).toISOString() : '?'}`),
        ].join('\n'),
      );
      return 0;
    }
    if (verb === 'dlq' && sub === 'list') {
      // JSON rows keep `reason` (the message) and add the error's `code` and `retryable`.
      const dead = (await backend.listDead(options.limit)).map(({ error, ...d }) => ({ ...d, code: error.code, reason: error.message, retryable: error.retryable }));
      print(dead, () => (dead.length ? dead.map((d) => `${d.id}  attempts=${d.attempts}  ${new Date(d.deadAt).toISOString()}  ${d.code}  ${d.reason}`).join('\n') : 'dead-letter queue is empty'));
      return 0;
    }
    if (verb === 'dlq' && sub === 'retry') {
      if (!arg && !options.all) throw invalidOption('dlq retry', 'needs a batch ID or --all');
      const n = await backend.retryDead(options.all ? undefined : arg);
      if (!options.all && n === 0) {
        process.stderr.write(`metaguard: dlq retry: no dead-lettered batch with ID ${JSON.stringify(arg)} (see: metaguard queue dlq list)\n`);
        return 1;
      }
      print({ retried: n }, () => `requeued ${n} dead-lettered batch${n === 1 ? '' : 'es'}`);
      return 0;
    }
    if (verb === 'dlq' && sub === 'purge') {
      if (!options.yes && process.stdin.isTTY && process.stderr.isTTY) {
        const dead = (await backend.stats()).dead;
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        const answer = await rl.question(`purge ${dead} dead-lettered batch${dead === 1 ? '' : 'es'} of queue ${config.queue} (${config.backend})? [y/N] `).finally(() => rl.close());
        if (!/^y(es)?$/i.test(answer.trim())) {
          process.stderr.write('metaguard: dlq purge: not confirmed; nothing purged\n');
          return 1;
        }
      }
      const n = await backend.purgeDead();
      print({ purged: n }, () => `purged ${n} dead-lettered batch${n === 1 ? '' : 'es'}`);
      return 0;
    }
    throw invalidOption('queue', `unknown subcommand ${JSON.stringify(positionals.join(' '))} (stats, dlq list, dlq retry, dlq purge)`);
  } finally {
    await backend.close();
  }
}
