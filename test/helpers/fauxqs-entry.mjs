// Runs fauxqs in memory on FAUXQS_PORT with its logger off: test/helpers/fauxqs-server.ts starts it.
import { startFauxqs } from 'fauxqs';

const server = await startFauxqs({ port: Number(process.env.FAUXQS_PORT), host: '127.0.0.1', logger: false });
const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
