/** TLS material for backend connections: the files a queue config names, read when connecting. */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { invalidOption } from '../errors.js';
import type { TlsSettings } from '../options/queue.js';

function readFile(where: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw invalidOption(where, `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** Node TLS options from validated settings; `where` is the config key, for messages. */
export function tlsOptions(settings: TlsSettings | undefined, where: string): ConnectionOptions {
  if (!settings) return {};
  const out: ConnectionOptions = { rejectUnauthorized: settings.rejectUnauthorized };
  if (settings.ca !== undefined) out.ca = readFile(`${where}.ca`, settings.ca);
  if (settings.cert !== undefined) out.cert = readFile(`${where}.cert`, settings.cert);
  if (settings.key !== undefined) out.key = readFile(`${where}.key`, settings.key);
  if (settings.servername !== undefined) out.servername = settings.servername;
  return out;
}

/** True when a backend's error says the credentials were refused (a configuration error, not an outage). */
export function isAuthFailure(err: unknown): boolean {
  const message = String((err as Error)?.message ?? err);
  return /WRONGPASS|NOAUTH|NOPERM|invalid username-password|invalid password|AUTH failed|SASL.*(fail|auth)|Authentication failed|SaslAuthenticate/i.test(message);
}
