/** `metaguard queue stats | dlq list | dlq retry [ID|--all] | dlq purge`. */
import { invalidOption } from '../errors.js';
import { describeOptions, resolveOptions, type Schema } from '../options/schema.js';
import { backends, validateQueueConfig } from '../queue/config.js';
import { createBackend } from '../queue/index.js';
import { priorities } from '../queue/types.js';
import { parseFlags } from './args.js';

const queueSchema = {
  backend: { type: 'enum', values: backends, description: 'queue backend (overrides queue-config.backend)' },
  queueConfig: { type: 'json', description: 'queue configuration JSON' },
  json: { type: 'bool', default: false, noEnv: true, description: 'print JSON' },
  all: { type: 'bool', default: false, noEnv: true, description: 'with dlq retry: every dead-lettered batch' },
  limit: { type: 'int', min: 1, default: 100, noEnv: true, description: 'with dlq list: most entries' },
} satisfies Schema;

const help = `Usage: metaguard queue stats
       metaguard queue dlq list
       metaguard queue dlq retry ID | --all
       metaguard queue dlq purge

Options:
${describeOptions(queueSchema)}`;

export async function queueCommand(argv: string[]): Promise<number> {
  const { flags, positionals, help: wantHelp } = parseFlags(argv, queueSchema);
  if (wantHelp || positionals.length === 0) {
    process.stdout.write(help + '\n');
    return wantHelp ? 0 : 2;
  }
  const options = resolveOptions<{ backend?: string; queueConfig?: unknown; json: boolean; all: boolean; limit: number }>(queueSchema, { flags, env: process.env });
  const config = validateQueueConfig(options.queueConfig ?? {}, options.backend ? { backend: options.backend as 'redis' } : {});
  const [verb, sub, arg] = positionals;
  const backend = await createBackend(config);
  await backend.connect();
  const print = (value: unknown, text: () => string) => process.stdout.write((options.json ? JSON.stringify(value, null, 2) : text()) + '\n');
  try {
    if (verb === 'stats') {
      const s = await backend.stats();
      print(s, () =>
        [
          `queue ${config.queue} (${config.backend})`,
          `  pending    ${priorities.map((p) => `${p}=${s.pending[p]}`).join(' ')}`,
          `  in-flight  ${s.inflight}   delayed ${s.delayed}   dead ${s.dead}`,
          `  totals     dispatched ${s.dispatched}   completed ${s.completed}   requeued ${s.requeued}`,
          `  workers    ${s.workers.length} active`,
          ...s.workers.map((w) => `    ${w.workerId}  threads=${w.threads}  cases=${w.casesCompleted ?? 0}  state=${w.state ?? 'running'}  last heartbeat ${w.lastHeartbeat ? new Date(w.lastHeartbeat).toISOString() : '?'}`),
        ].join('\n'),
      );
      return 0;
    }
    if (verb === 'dlq' && sub === 'list') {
      const dead = await backend.listDead(options.limit);
      print(dead, () => (dead.length ? dead.map((d) => `${d.id}  attempts=${d.attempts}  ${new Date(d.deadAt).toISOString()}  ${d.reason}`).join('\n') : 'dead-letter queue is empty'));
      return 0;
    }
    if (verb === 'dlq' && sub === 'retry') {
      if (!arg && !options.all) throw invalidOption('dlq retry', 'needs a batch ID or --all');
      const n = await backend.retryDead(options.all ? undefined : arg);
      print({ retried: n }, () => `requeued ${n} dead-lettered batch${n === 1 ? '' : 'es'}`);
      return 0;
    }
    if (verb === 'dlq' && sub === 'purge') {
      const n = await backend.purgeDead();
      print({ purged: n }, () => `purged ${n} dead-lettered batch${n === 1 ? '' : 'es'}`);
      return 0;
    }
    throw invalidOption('queue', `unknown subcommand ${JSON.stringify(positionals.join(' '))} (stats, dlq list, dlq retry, dlq purge)`);
  } finally {
    await backend.close();
  }
}
