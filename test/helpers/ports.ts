// Loopback ports for tests that open their own connections.
import {createServer} from 'node:net';

/** A port nothing uses now (bound on 127.0.0.1, then released), for a connection opened later. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once(`error`, reject);
    server.listen({host: `127.0.0.1`, port: 0}, resolve);
  });
  const port = (server.address() as {port: number}).port;
  await new Promise(resolve => server.close(resolve));
  return port;
}
