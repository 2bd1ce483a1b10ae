/**
 * The worker daemon under a stand-in for systemd: a datagram socket as $NOTIFY_SOCKET, a watchdog
 * period in $WATCHDOG_USEC. The daemon must send READY=1 once it is up, WATCHDOG=1 while it consumes,
 * STATUS= lines, and STOPPING=1 when SIGTERM drains it; it exits 0.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnWorker } from './helpers/queue-harness.ts';
import { startRedis, type RedisServer } from './helpers/redis-server.ts';
import { until } from './helpers/poll.ts';

const listener = fileURLToPath(new URL('./helpers/notify-listener.py', import.meta.url));
const python = spawnSync('python3', ['--version']).status === 0;

// A worker needs a queue another process can reach (the memory backend is refused): a real Redis.
let redis: RedisServer;
before(async () => {
  redis = await startRedis({ appendonly: false });
});
after(async () => {
  await redis?.stop();
});

for (const kind of ['path', 'abstract'] as const) {
  it(`sends READY, WATCHDOG, STATUS and STOPPING to a ${kind} NOTIFY_SOCKET`, { skip: python ? false : 'python3 missing' }, async () => {
    const addr = kind === 'path' ? join(mkdtempSync(join(tmpdir(), 'mg-notify-')), 'notify.sock') : `@mg-notify-${process.pid}-${Date.now()}`;
    const sock = spawn('python3', [listener, addr], { stdio: ['ignore', 'pipe', 'inherit'] });
    let got = '';
    sock.stdout!.on('data', (d) => (got += d));
    try {
      await until('listener', () => got.includes('listening'), 5000);
      const w = spawnWorker({ backend: 'redis', connection: { host: '127.0.0.1', port: redis.port } }, { env: { NOTIFY_SOCKET: addr, WATCHDOG_USEC: '400000' }, args: ['--threads', '1'] });
      await until('READY=1', () => /READY=1/.test(got), 15_000);
      await until('two watchdog pings', () => (got.match(/WATCHDOG=1/g) ?? []).length >= 2, 5000);
      assert.match(got, /STATUS=running: [\d.]+ cases\/s/);
      w.child.kill('SIGTERM');
      const exit = await w.exited;
      assert.equal(exit.code, 0, w.output());
      await until('STOPPING=1', () => /STOPPING=1/.test(got), 5000);
      const lines = got.trim().split('\n');
      assert.ok(lines.findIndex((l) => l.includes('READY=1')) < lines.findIndex((l) => l.includes('STOPPING=1')));
    } finally {
      sock.kill();
    }
  });
}
