/**
 * What the unit tests of `journey serve`'s server share: servers and ws clients on loopback, closed
 * after each test, every message a client got checked against docs/event-schema.json, and plain
 * HTTP GETs.
 */
import http from 'node:http';
import { afterEach } from 'vitest';
import { startServer, type JourneyServer, type ServerOptions } from '../../src/output/server.js';
import { RecordingClient, validators } from './serve-helpers.js';

export const TOKEN = 'test-token-0123456789abcdef';

export interface ServerFixtures {
  server(opts?: ServerOptions): Promise<JourneyServer>;
  client(url: string, opts?: ConstructorParameters<typeof RecordingClient>[1], store?: boolean): RecordingClient;
}

/** Servers and clients for the tests of one file, closed after each test (call at the top of the file). */
export function useServerFixtures(): ServerFixtures {
  let servers: JourneyServer[] = [];
  let clients: RecordingClient[] = [];
  afterEach(async () => {
    for (const c of clients) c.close();
    clients = [];
    await Promise.all(servers.map((s) => s.close()));
    servers = [];
  });
  return {
    async server(opts: ServerOptions = {}): Promise<JourneyServer> {
      const s = await startServer({ port: 0, processMetrics: false, ...opts });
      servers.push(s);
      return s;
    },
    client(url: string, opts: ConstructorParameters<typeof RecordingClient>[1] = {}, store = true): RecordingClient {
      const c = new RecordingClient(url, opts, store);
      clients.push(c);
      return c;
    },
  };
}

export function expectAllValid(c: RecordingClient): void {
  const { server: validate } = validators();
  for (const m of c.messages) {
    if (!validate(m)) throw new Error(`invalid message ${JSON.stringify(m).slice(0, 300)}: ${JSON.stringify(validate.errors?.slice(0, 3))}`);
  }
}

export function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      })
      .on('error', reject);
  });
}
