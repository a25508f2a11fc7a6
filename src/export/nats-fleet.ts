/**
 * `journey serve --from nats://SERVER[:4222]/PREFIX[?since=S&stream=NAME&jetstream=false]`: the
 * events every host publishes with `--export nats://…/PREFIX`, read back for one fleet view.
 * With JetStream an ordered consumer reads the stream (from now, or `since` seconds back) and
 * resumes where it was after the server or the connection comes back; core NATS (jetstream=false)
 * just subscribes. Each event gets its host (from the subject) and the server's own sequence
 * number; flow ids become HOST/ID so that two hosts' conntrack ids never collide. A message that
 * is not an event of this schema version is counted and skipped.
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { connect, consumerOpts, Events, type NatsConnection } from 'nats';
import { JourneyError } from '../model/errors.js';
import { SCHEMA_VERSION, type JourneyEvent } from '../model/events.js';
import { ensureStream } from './nats.js';
import { natsConnectOptions, parseNatsUrl, type NatsUrl } from './nats-connect.js';

export interface FleetStats {
  readonly received: number;
  readonly skipped: number;
  readonly reconnects: number;
  readonly hosts: readonly string[];
}

const TYPES = new Set<string>(['flow.start', 'flow.update', 'flow.end', 'drop', 'ruleset.changed', 'capture.stats', 'lost', 'notice']);

/** The event of a message on PREFIX.HOST.TYPE, re-sequenced and with its host; null when it is not one. */
export function fleetEvent(u: Pick<NatsUrl, 'prefix'>, subject: string, data: Uint8Array, seq: number): JourneyEvent | null {
  const head = `${u.prefix}.`;
  if (!subject.startsWith(head)) return null;
  const rest = subject.slice(head.length);
  const dot = rest.indexOf('.');
  if (dot <= 0) return null;
  const host = rest.slice(0, dot);
  const type = rest.slice(dot + 1);
  let ev: Record<string, unknown>;
  try {
    ev = JSON.parse(new TextDecoder().decode(data)) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (ev === null || typeof ev !== 'object' || ev['v'] !== SCHEMA_VERSION || ev['type'] !== type || !TYPES.has(type)) return null;
  if (typeof ev['time'] !== 'number' || typeof ev['seq'] !== 'number') return null;
  const prefixId = (id: unknown): unknown => (typeof id === 'string' ? `${host}/${id}` : id);
  const out: Record<string, unknown> = { ...ev, seq, host };
  if (type.startsWith('flow.')) {
    const flow = ev['flow'] as Record<string, unknown> | undefined;
    if (flow === undefined || typeof flow !== 'object' || typeof flow['id'] !== 'string') return null;
    const proxied = flow['proxiedBy'] as Record<string, unknown> | undefined;
    out['flow'] = {
      ...flow,
      id: prefixId(flow['id']),
      ...(proxied && typeof proxied === 'object' ? { proxiedBy: { ...proxied, peerFlowId: prefixId(proxied['peerFlowId']) } } : {}),
    };
  } else if (type === 'drop') out['flowId'] = prefixId(ev['flowId']);
  return out as unknown as JourneyEvent;
}

export class NatsFleet extends EventEmitter {
  readonly target: string;
  private seq = 0;
  private readonly counts = { received: 0, skipped: 0, reconnects: 0 };
  private readonly hostSet = new Set<string>();
  private stopping = false;
  private stopConsumer: (() => Promise<unknown>) | null = null;
  readonly done: Promise<void>;
  /** The connection's status events; stopped on close (an open iterator keeps the process alive). */
  private readonly status: ReturnType<NatsConnection['status']>;

  constructor(
    private readonly nc: NatsConnection,
    private readonly u: NatsUrl,
    private readonly sinceS: number,
    private readonly log: (line: string) => void,
  ) {
    super();
    this.target = u.redacted;
    this.status = nc.status();
    void this.watchStatus();
    this.done = this.read().catch((e: Error) => {
      if (!this.stopping) this.log(`${this.target}: reading stopped: ${e.message}`);
    });
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.status) {
      if (s.type === Events.Disconnect) this.log(`${this.target}: disconnected; reconnecting`);
      if (s.type === Events.Reconnect) {
        this.counts.reconnects++;
        this.log(`${this.target}: reconnected${this.u.jetstream ? '; the stream resumes where it was' : ''}`);
      }
    }
  }

  private take(subject: string, data: Uint8Array): void {
    const ev = fleetEvent(this.u, subject, data, this.seq + 1);
    if (ev === null) {
      this.counts.skipped++;
      return;
    }
    this.seq++;
    this.counts.received++;
    if (ev.host !== undefined) this.hostSet.add(ev.host);
    this.emit('event', ev);
  }

  private async read(): Promise<void> {
    const subject = `${this.u.prefix}.>`;
    if (!this.u.jetstream) {
      const sub = this.nc.subscribe(subject);
      this.stopConsumer = async () => sub.unsubscribe();
      for await (const m of sub) this.take(m.subject, m.data);
      return;
    }
    // a push-based ordered consumer: it recreates itself at the next stream sequence after a gap
    // or a server restart, and ends cleanly with the connection
    const o = consumerOpts();
    o.orderedConsumer();
    o.filterSubject(subject);
    if (this.sinceS > 0) o.startTime(new Date(Date.now() - this.sinceS * 1000));
    else o.deliverNew();
    const sub = await this.nc.jetstream().subscribe(subject, o);
    this.stopConsumer = async () => sub.unsubscribe();
    for await (const m of sub) this.take(m.subject, m.data);
  }

  stats(): FleetStats {
    return { ...this.counts, hosts: [...this.hostSet].sort() };
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const bounded = (p: Promise<unknown> | undefined) => Promise.race([p?.catch(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
    await bounded(this.stopConsumer?.());
    (this.status as { stop?: () => void }).stop?.();
    await this.nc.close().catch(() => undefined);
    // the consumer's iterator ends with the connection; never wait for it for long
    await bounded(this.done);
  }
}

/** Connects and starts reading (E_USAGE for a bad URL, E_EXPORT when the server cannot be reached). */
export async function openNatsFleet(spec: string, env: NodeJS.ProcessEnv, log: (line: string) => void): Promise<NatsFleet> {
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    throw new JourneyError('E_USAGE', `--from ${spec}: not a URL (nats://SERVER[:4222]/PREFIX)`);
  }
  if (url.protocol !== 'nats:') throw new JourneyError('E_USAGE', `--from: only nats://SERVER/PREFIX is known, not ${url.protocol}//`);
  const u = parseNatsUrl(url, ['since', 'max-age']);
  const sinceRaw = u.params.get('since');
  const sinceS = sinceRaw === null ? 0 : Number(sinceRaw);
  if (!Number.isInteger(sinceS) || sinceS < 0) throw new JourneyError('E_USAGE', `${u.redacted}: since is a whole number of seconds`);
  let nc: NatsConnection;
  try {
    nc = await connect(natsConnectOptions(u, env, `journey serve --from (${hostname()})`));
  } catch (e) {
    throw new JourneyError('E_EXPORT', `${u.redacted}: ${(e as Error).message}`);
  }
  if (u.jetstream) {
    try {
      await ensureStream(nc, u, Number(u.params.get('max-age') ?? 3600));
    } catch (e) {
      await nc.close().catch(() => undefined);
      throw e;
    }
  }
  return new NatsFleet(nc, u, sinceS, log);
}
