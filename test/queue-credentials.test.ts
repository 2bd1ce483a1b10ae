/**
 * Credentials and transports of the queue (src/queue/config.ts, tls.ts, redis.ts): a Redis 6 ACL
 * user, TLS with a CA file and a client certificate, Redis Sentinel; a wrong password is a
 * configuration error (the worker exits 78 so systemd does not restart-loop; code MG_ERR_BACKEND_AUTH).
 * Kafka ssl/sasl keys are validated here (the test broker speaks neither).
 *
 * Each server is a real redis-server (or redis-server --sentinel) started on free ports; certificates
 * are made with openssl.
 * Run: node --import tsx --test test/queue-credentials.test.ts
 */
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { validateQueueConfig } from '../src/options/queue.ts';
import { createBackend } from '../src/queue/index.ts';
import { redisAvailable } from './helpers/redis-server.ts';
import { freePort } from './helpers/net.ts';
import { fixture, killAllWorkers, queueReport, spawnWorker, type RunOptions } from './helpers/queue-harness.ts';
import { until } from './helpers/poll.ts';

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skip = !redisAvailable() ? 'redis-server is not installed' : !hasOpenssl ? 'openssl is not installed' : false;
const run: RunOptions = { task: fixture('realm/task.mjs'), baseline: fixture('realm/baseline.mjs'), candidate: fixture('realm/baseline.mjs'), n: 20 };

const servers: ChildProcess[] = [];
async function server(args: string[], readyPort: number, tls?: { ca: string; cert: string; key: string }): Promise<ChildProcess> {
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  servers.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  await until(
    () => `redis-server ${args.join(' ')} (port ${readyPort}${tls ? ', tls' : ''}) to start:\n${out}`,
    () => {
      if (child.exitCode !== null) throw new Error(`redis-server ${args.join(' ')} (port ${readyPort}${tls ? ', tls' : ''}) exited (${child.exitCode}):\n${out}`);
      return /Ready to accept connections|Sentinel ID is/.test(out);
    },
    10_000,
  );
  return child;
}

describe('queue config: credentials and transports (unit)', () => {
  it('accepts an ACL user, TLS files, sentinels, kafka ssl and sasl', () => {
    const redis = validateQueueConfig({
      backend: 'redis',
      connection: { username: 'alice', password: 'p', ssl: { ca: '/ca.crt', cert: '/c.crt', key: '/c.key' }, sentinels: [{ host: 'h', port: 26379 }], name: 'mymaster' },
    });
    assert.equal(redis.connection!.username, 'alice');
    assert.equal(redis.connection!.ssl, true);
    assert.deepEqual(redis.connection!.tls, { ca: '/ca.crt', cert: '/c.crt', key: '/c.key', rejectUnauthorized: true });
    assert.equal(redis.connection!.name, 'mymaster');
    const kafka = validateQueueConfig({ backend: 'kafka', bootstrap_servers: 'k:9092', ssl: true, sasl: { mechanism: 'scram-sha-512', username: 'u', password: 'p' } });
    assert.equal(kafka.ssl, true);
    assert.equal(kafka.sasl!.mechanism, 'scram-sha-512');
  });

  it('names the field of each mistake', () => {
    const cases: [object, RegExp][] = [
      [{ backend: 'redis', connection: { ssl: { ca: '/x', cert: '/c' } } }, /connection\.ssl: a client certificate needs both cert and key/],
      [{ backend: 'redis', connection: { ssl: { cafile: '/x' } } }, /connection\.ssl\.cafile: unknown key/],
      [{ backend: 'redis', connection: { sentinels: [{ host: 'h' }] } }, /connection\.name: is required with sentinels/],
      [{ backend: 'redis', connection: { sentinels: [] , name: 'm' } }, /connection\.sentinels: must be a non-empty list/],
      [{ backend: 'redis', connection: { name: 'm' } }, /connection\.name: is only used with sentinels/],
      [{ backend: 'kafka', bootstrap_servers: 'k:1', sasl: { mechanism: 'gssapi', username: 'u', password: 'p' } }, /sasl\.mechanism/],
      [{ backend: 'kafka', bootstrap_servers: 'k:1', sasl: { username: 'u' } }, /sasl: needs username and password/],
      [{ backend: 'redis', sasl: { username: 'u', password: 'p' } }, /sasl: is a kafka key/],
    ];
    for (const [config, message] of cases) assert.throws(() => validateQueueConfig(config), message, JSON.stringify(config));
  });
});

describe('Redis credentials and transports', { skip, concurrency: false }, () => {
  let dir: string;
  let certs: { ca: string; cert: string; key: string; clientCert: string; clientKey: string; otherCa: string };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mg-tls-'));
    const f = (n: string) => join(dir, n);
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    writeFileSync(f('ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1');
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=mg-test-ca');
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other.key', '-out', 'other.crt', '-days', '2', '-subj', '/CN=mg-other-ca');
    for (const who of ['server', 'client']) {
      ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who === 'server' ? 'localhost' : 'mg-client'}`);
      ssl('x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${who}.crt`, '-days', '2', '-extfile', 'ext');
    }
    certs = { ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key'), clientCert: f('client.crt'), clientKey: f('client.key'), otherCa: f('other.crt') };
  });
  after(() => {
    killAllWorkers();
    for (const s of servers) s.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const queue = () => `cred_${randomUUID().slice(0, 8)}`;

  it('an ACL user runs a job; a wrong password makes the worker exit 78 with MG_ERR_BACKEND_AUTH', async () => {
    const port = await freePort();
    await server(['--port', String(port), '--save', '', '--appendonly', 'no', '--user', 'default', 'off', '--user', 'alice', 'on', '>s3cret', '~*', '&*', '+@all'], port);
    const qc = { backend: 'redis', connection: { host: '127.0.0.1', port, username: 'alice', password: 's3cret' }, queue: queue(), lease_seconds: 5, heartbeat_check_interval: 0.25, batch_size: 10 };
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    try {
      const report = await queueReport(run, qc);
      assert.equal(report.candidate.total, 20);
    } finally {
      w.child.kill('SIGTERM');
      await w.exited;
    }
    const wrong = spawnWorker({ ...qc, connection: { ...qc.connection, password: 'wrong' } }, { args: ['--threads', '1'] });
    const { code } = await wrong.exited;
    assert.equal(code, 78, wrong.output());
    assert.match(wrong.output(), /MG_ERR_BACKEND_AUTH|refused the credentials/);
    assert.doesNotMatch(wrong.output(), /wrong/, 'the password is not echoed');
  });

  it('TLS with a CA file and a client certificate runs a job; an unknown CA is refused', async () => {
    const port = await freePort();
    await server(['--port', '0', '--tls-port', String(port), '--tls-cert-file', certs.cert, '--tls-key-file', certs.key, '--tls-ca-cert-file', certs.ca, '--tls-auth-clients', 'yes', '--save', '', '--appendonly', 'no'], port, certs);
    const ssl = { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey };
    const qc = { backend: 'redis', connection: { host: '127.0.0.1', port, ssl }, queue: queue(), lease_seconds: 5, heartbeat_check_interval: 0.25, batch_size: 10 };
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    try {
      const report = await queueReport(run, qc);
      assert.equal(report.candidate.total, 20);
    } finally {
      w.child.kill('SIGTERM');
      await w.exited;
    }
    const untrusted = await createBackend(validateQueueConfig({ ...qc, connection: { host: '127.0.0.1', port, ssl: { ...ssl, ca: certs.otherCa } } }));
    await assert.rejects(untrusted.connect(), (err: Error & { code?: string }) => err.code === 'MG_ERR_BACKEND' && /certificate/i.test(err.message));
    await untrusted.close();
  });

  it('Redis Sentinel: the backend finds the master through the sentinels and runs a job', async () => {
    const masterPort = await freePort();
    await server(['--port', String(masterPort), '--save', '', '--appendonly', 'no'], masterPort);
    const sentinelPort = await freePort();
    const conf = join(dir, `sentinel-${sentinelPort}.conf`);
    writeFileSync(conf, `port ${sentinelPort}\nsentinel monitor mymaster 127.0.0.1 ${masterPort} 1\n`);
    await server([conf, '--sentinel'], sentinelPort);
    const qc = { backend: 'redis', connection: { sentinels: [{ host: '127.0.0.1', port: sentinelPort }], name: 'mymaster' }, queue: queue(), lease_seconds: 5, heartbeat_check_interval: 0.25, batch_size: 10 };
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    try {
      const report = await queueReport(run, qc);
      assert.equal(report.candidate.total, 20);
    } finally {
      w.child.kill('SIGTERM');
      await w.exited;
    }
  });
});
