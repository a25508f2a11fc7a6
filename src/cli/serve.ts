/**
 * `journey serve`: the live pipeline (or a replay) streamed over WebSocket, with the web page and
 * Prometheus metrics, on one port (src/output/server.ts; docs/events.md).
 * stderr carries the logs (where it listens, notices); nothing is written to stdout.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { JourneyError } from '../model/errors.js';
import type { JourneyEvent } from '../model/events.js';
import { startPipeline, type PipelineOptions } from '../pipeline/pipeline.js';
import { DEFAULT_PORT, parseListen } from './listen-address.js';
import { addPipelineOptions, pipelineOptionsFrom, type PipelineCliOptions } from './pipeline-options.js';
import { startServer, type ServerOptions } from '../output/server.js';
import type { VerifyHandler } from '../output/ws-hub.js';
import { verifyCheck, type AnyVerifyCheck } from '../verify/checks.js';
import type { VerifyOptions } from '../verify/verify-hairpin.js';
import { openNatsFleet } from '../export/nats-fleet.js';
import { registerExportMetrics, registerFleetMetrics } from '../export/metrics.js';
import { addDropOptions, type DropCliOptions, dropPrivilegesIfRoot } from './privilege-drop.js';
import { addExportOptions, openCliExports, type ExportCliOptions } from './export-options.js';

/** A bearer token over plain HTTP crosses the network readable by anyone on the path. */
const PLAIN_HTTP_TOKEN_WARNING =
  'warning: the token is sent in clear over plain HTTP (anyone on the path can read and reuse it); serve HTTPS with --tls-cert/--tls-key';

/**
 * `verify` over the WebSocket: the requested registered check (src/verify/checks.ts) on the served
 * host, with the server's own namespace and Docker endpoint; the client's options are bounded by
 * the check's schema (validated in src/output/subscription.ts). A replay serves no checks (E_UNAVAILABLE).
 * `run` replaces the check's own run (tests).
 */
export function serveVerifyHandler<O = VerifyOptions>(
  o: { netns?: string; dockerHost?: string; docker?: boolean },
  run?: (opts: O, check: AnyVerifyCheck) => Promise<unknown>,
): VerifyHandler {
  return (req, signal) => {
    const check = verifyCheck(req.check);
    if (check === undefined) return Promise.reject(new JourneyError('E_USAGE', `no check "${req.check}"`));
    const opts = check.fromWire(req.options ?? {}, {
      ...(o.netns !== undefined ? { netns: o.netns } : {}),
      ...(o.docker === false ? { noDocker: true } : o.dockerHost !== undefined ? { dockerHost: o.dockerHost } : {}),
      signal,
    });
    return run !== undefined ? run(opts as O, check) : check.run(opts);
  };
}

interface ServeCliOptions extends PipelineCliOptions, ExportCliOptions, DropCliOptions {
  from?: string;
  listen: string;
  port?: string;
  token?: string;
  tlsCert?: string;
  tlsKey?: string;
  replay: string;
  maxClients: string;
  queue: string;
  statsInterval: string;
  maxFlows?: string;
  duration?: string;
  quiet?: boolean;
}

function intOpt(v: string | undefined, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new JourneyError('E_USAGE', `--${name} wants a whole number from ${min} to ${max}, got "${v}"`);
  return n;
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new JourneyError('E_USAGE', `cannot read the TLS ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** The server's options both kinds of serve share: where it listens, who may connect, what each client is kept. */
function serverOptionsFrom(o: ServeCliOptions, token: string | undefined): ServerOptions {
  const listen = parseListen(o.listen, o.port);
  return {
    listen: listen.host,
    port: listen.port,
    ...(token !== undefined && token !== '' ? { token } : {}),
    ...(o.tlsCert !== undefined && o.tlsKey !== undefined ? { tls: { cert: readPem(o.tlsCert, 'certificate'), key: readPem(o.tlsKey, 'key') } } : {}),
    replay: intOpt(o.replay, 'replay', 0, 100_000) ?? 256,
    maxClients: intOpt(o.maxClients, 'max-clients', 1, 10_000) ?? 32,
    queueMaxItems: intOpt(o.queue, 'queue', 16, 1_000_000) ?? 2048,
  };
}

export function registerServe(program: Command): void {
  const cmd = program
    .command('serve')
    .description('Stream annotated flow events over WebSocket, with a live web page and Prometheus metrics, on one port')
    .argument('[expression...]', 'capture filter in tcpdump syntax (same as --filter)')
    .option('--listen <addr>', 'address (and port) to listen on: HOST, HOST:PORT, [IPv6]:PORT; anything but loopback needs a token', '127.0.0.1')
    .option('-p, --port <port>', `TCP port when --listen has none (0: any free port; default ${DEFAULT_PORT})`)
    .option('--token <token>', 'bearer token clients must present (default $JOURNEY_TOKEN; prefer the variable: arguments show in ps)')
    .option('--tls-cert <file>', 'PEM certificate: serve https/wss')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--replay <n>', 'events kept and replayed to new subscribers', '256')
    .option('--max-clients <n>', 'WebSocket clients at most', '32')
    .option('--queue <n>', 'messages queued per client before the oldest are dropped (and reported)', '2048');
  addPipelineOptions(cmd, { readNote: '(the server stays up afterwards)' })
    .option('--stats-interval <seconds>', 'capture.stats period', '5')
    .option('--max-flows <n>', 'largest number of live flows kept (oldest evicted, counted)')
    .option('--duration <seconds>', 'stop after this many seconds')
    .option('-q, --quiet', 'do not log notices on stderr')
    .option(
      '--from <url>',
      'no capture: serve the events many hosts publish with --export nats://SERVER/PREFIX (nats://SERVER[:4222]/PREFIX[?since=SECONDS]; docs/export.md)',
    );
  addDropOptions(addExportOptions(cmd)).action(async (expression: string[], o: ServeCliOptions) => {
    await runServe(expression, o);
  });
}

async function runServe(expression: string[], o: ServeCliOptions): Promise<void> {
  const token = o.token ?? process.env['JOURNEY_TOKEN'];
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new JourneyError('E_USAGE', '--tls-cert and --tls-key go together');
  if (o.from !== undefined) return runServeFrom(expression, o, token);
  const shared = pipelineOptionsFrom(expression, o, { rulesetErrorDetail: (e) => e.code ?? e.message });
  const dropped = await dropPrivilegesIfRoot(o, { listenPort: parseListen(o.listen, o.port).port });
  if (dropped !== null) {
    process.exitCode = dropped;
    return;
  }
  const serverOpts: ServerOptions = {
    ...serverOptionsFrom(o, token),
    ...(o.read === undefined
      ? {
          verify: serveVerifyHandler({
            ...(o.netns !== undefined ? { netns: o.netns } : {}),
            ...(o.dockerHost !== undefined ? { dockerHost: o.dockerHost } : {}),
            docker: o.docker,
          }),
        }
      : {}),
  };
  const statsS = intOpt(o.statsInterval, 'stats-interval', 0, 86_400) ?? 5;
  const maxFlows = intOpt(o.maxFlows, 'max-flows', 1);
  const durationS = intOpt(o.duration, 'duration', 1);
  const pipelineOpts: PipelineOptions = {
    ...shared,
    statsIntervalMs: statsS * 1000,
    ...(maxFlows !== undefined ? { maxFlows } : {}),
  };

  // Listen first: a busy port or a refused address fails before any capture starts.
  const server = await startServer(serverOpts);
  const log = (line: string): void => {
    process.stderr.write(`journey serve: ${line}\n`);
  };
  if (o.token !== undefined) log('warning: --token is visible to other users in the process list; prefer JOURNEY_TOKEN');
  if (token !== undefined && token !== '' && o.tlsCert === undefined) log(PLAIN_HTTP_TOKEN_WARNING);
  let pipeline: Awaited<ReturnType<typeof startPipeline>>;
  let exports: Awaited<ReturnType<typeof openCliExports>> = null;
  try {
    exports = await openCliExports(o, log);
    const open = exports;
    if (open) registerExportMetrics(server.metrics.registry, () => open.targets.map((t) => t.stats()));
    pipeline = await startPipeline(pipelineOpts);
  } catch (e) {
    await exports?.close();
    await server.close();
    throw e;
  }
  pipeline.on('event', (ev: JourneyEvent) => {
    server.publish(ev);
    exports?.write(ev);
    if (ev.type === 'notice' && o.quiet !== true) log(`notice: ${ev.message}`);
  });
  log(
    `listening on ${server.url} (WebSocket ${server.wsUrl}, metrics ${server.url}metrics)${serverOpts.token !== undefined ? ', token required' : ''}; ${pipeline.mode} on ${pipeline.interfaces.join(', ') || '(no interface yet)'}`,
  );

  let stopping = false;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const stop = (): void => {
    if (stopping) process.exit(130); // a second Ctrl-C: leave now
    stopping = true;
    finish();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const timer = durationS !== undefined ? setTimeout(stop, durationS * 1000) : null;
  void pipeline.done.then(() => {
    if (!stopping && pipeline.mode === 'replay') {
      log(`replay finished: still serving the last ${server.hub.replayAvailable} events to new subscribers (Ctrl-C to stop)`);
    }
  });
  await finished;
  if (timer) clearTimeout(timer);
  await pipeline.stop();
  for (const line of (await exports?.close()) ?? []) log(line);
  await server.close();
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  const s = pipeline.stats();
  log(`stopped: ${s.flows.flowsStarted} flows, ${server.metrics.sentCount} messages sent, ${server.metrics.lostCount} lost to slow clients`);
}

/** Resolves on Ctrl-C, SIGTERM or after `durationS`; a second signal leaves at once. */
function untilStopped(durationS: number | undefined): Promise<void> {
  let stopping = false;
  return new Promise<void>((resolve) => {
    const stop = (): void => {
      if (stopping) process.exit(130); // a second Ctrl-C: leave now
      stopping = true;
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      if (timer) clearTimeout(timer);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    const timer = durationS !== undefined ? setTimeout(stop, durationS * 1000) : null;
  });
}

/**
 * `serve --from nats://…`: no capture of its own; the same page, WebSocket API and slow-client
 * bounds, fed by the events many hosts publish, each with its host (docs/export.md).
 */
async function runServeFrom(expression: string[], o: ServeCliOptions, token: string | undefined): Promise<void> {
  const capture = [
    expression.length > 0 ? 'a capture filter' : '',
    o.interface ? '--interface' : '',
    o.netns !== undefined ? '--netns' : '',
    o.read ? '--read' : '',
    o.filter !== undefined ? '--filter' : '',
    o.export ? '--export' : '',
  ].filter((x) => x !== '');
  if (capture.length > 0)
    throw new JourneyError('E_USAGE', `--from serves what other hosts publish: ${capture.join(', ')} would need a capture of its own`);
  const server = await startServer(serverOptionsFrom(o, token));
  const log = (line: string): void => {
    process.stderr.write(`journey serve: ${line}\n`);
  };
  if (o.token !== undefined) log('warning: --token is visible to other users in the process list; prefer JOURNEY_TOKEN');
  if (token !== undefined && token !== '' && o.tlsCert === undefined) log(PLAIN_HTTP_TOKEN_WARNING);
  const durationS = intOpt(o.duration, 'duration', 1);
  let fleet: Awaited<ReturnType<typeof openNatsFleet>>;
  try {
    fleet = await openNatsFleet(o.from as string, process.env, log);
  } catch (e) {
    await server.close();
    throw e;
  }
  const reader = fleet;
  registerFleetMetrics(server.metrics.registry, () => reader.stats());
  fleet.on('event', (ev: JourneyEvent) => {
    server.publish(ev);
    if (ev.type === 'notice' && o.quiet !== true) log(`notice from ${ev.host ?? '?'}: ${ev.message}`);
  });
  log(
    `listening on ${server.url} (WebSocket ${server.wsUrl}, metrics ${server.url}metrics)${token !== undefined && token !== '' ? ', token required' : ''}; events from ${fleet.target}`,
  );
  await untilStopped(durationS);
  await fleet.stop();
  await server.close();
  const s = fleet.stats();
  log(
    `stopped: ${s.received} events from ${s.hosts.length} hosts (${s.hosts.join(', ')}), ${s.skipped} skipped, ${s.reconnects} reconnects; ${server.metrics.sentCount} messages sent, ${server.metrics.lostCount} lost to slow clients`,
  );
}
