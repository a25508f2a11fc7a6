/**
 * `--export ipfix://COLLECTOR:4739[?transport=udp|tcp|tls&active=S&template-refresh=S&domain=N&pen=N&mtu=B]`:
 * one IPFIX flow record per flow at its end and every `active` seconds while it lives (RFC 7011,
 * NAT fields as RFC 8158, docs/export.md). Templates go out with the first message and, over
 * UDP, again every `template-refresh` seconds; over TCP/TLS once per session (RFC 7011 §8). The
 * sequence number counts the data records of the session before each message. Records that
 * cannot be sent (queue full while the collector is away, a send that fails) are counted as lost.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect as tcpConnect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { JourneyError } from '../model/errors.js';
import type { FlowEvent, FlowInfo, JourneyEvent } from '../model/events.js';
import {
  dataRecordLength,
  encodeMessage,
  encodeSet,
  encodeTemplateRecord,
  MESSAGE_HEADER_BYTES,
  SET_HEADER_BYTES,
  TEMPLATE_SET_ID,
  writeDataRecord,
  type Template,
} from './ipfix-wire.js';
import {
  DEFAULT_PEN,
  directionCounters,
  flowRecord,
  flowTemplates,
  TEMPLATE_KINDS,
  type DirectionCounters,
  type FlowRecord,
} from './ipfix-record.js';
import { redactUrl, type ExportContext, type ExportTarget, type ExportTargetKind } from './target.js';

export const IPFIX_TRANSPORTS = ['udp', 'tcp', 'tls'] as const;
export type IpfixTransport = (typeof IPFIX_TRANSPORTS)[number];

export interface IpfixOptions {
  readonly host: string;
  readonly port: number;
  readonly transport: IpfixTransport;
  /** Seconds between two records of a flow that lives on (RFC 6728 activeTimeout). */
  readonly activeS: number;
  /** UDP: seconds between template refreshes (RFC 6728 templateRefreshTimeout). */
  readonly templateRefreshS: number;
  readonly domainId: number;
  readonly pen: number;
  /** Largest message in bytes (UDP: keep under the path MTU). */
  readonly maxMessageBytes: number;
  /** Records held while a TCP collector is away; beyond that they are counted as lost. */
  readonly maxPending: number;
  readonly tls?: { readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer; readonly servername?: string };
}

/** FNV-1a of the host name: a stable observation domain per host. */
export function domainIdOf(host: string): number {
  let h = 0x811c9dc5;
  for (const c of Buffer.from(host, 'utf8')) h = Math.imul(h ^ c, 0x01000193) >>> 0;
  return h;
}

function num(url: URL, key: string, dflt: number, min: number, max: number): number {
  const v = url.searchParams.get(key);
  if (v === null) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new JourneyError('E_USAGE', `--export ${redactUrl(url)}: ${key} is a whole number from ${min} to ${max}`);
  return n;
}

const KNOWN_PARAMS = ['transport', 'active', 'template-refresh', 'domain', 'pen', 'mtu', 'queue'];

/** The options of an ipfix:// URL (E_USAGE when one is wrong); TLS files from the environment. */
export function ipfixOptionsFrom(url: URL, ctx: Pick<ExportContext, 'host' | 'env'>): IpfixOptions {
  if (url.hostname === '') throw new JourneyError('E_USAGE', '--export ipfix://COLLECTOR[:PORT]: the collector is missing');
  for (const k of url.searchParams.keys())
    if (!KNOWN_PARAMS.includes(k))
      throw new JourneyError('E_USAGE', `--export ${redactUrl(url)}: unknown parameter "${k}" (known: ${KNOWN_PARAMS.join(', ')})`);
  if (url.username !== '' || url.password !== '')
    throw new JourneyError('E_USAGE', '--export ipfix://: no credentials in the URL (TLS files come from JOURNEY_IPFIX_TLS_*)');
  const transport = (url.searchParams.get('transport') ?? 'udp') as IpfixTransport;
  if (!IPFIX_TRANSPORTS.includes(transport)) throw new JourneyError('E_USAGE', `--export ipfix://: transport is ${IPFIX_TRANSPORTS.join(', ')}`);
  const file = (name: string): Buffer | undefined => {
    const p = ctx.env[name];
    if (p === undefined || p === '') return undefined;
    try {
      return readFileSync(p);
    } catch (e) {
      throw new JourneyError('E_USAGE', `${name}=${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  const ca = transport === 'tls' ? file('JOURNEY_IPFIX_TLS_CA') : undefined;
  const cert = transport === 'tls' ? file('JOURNEY_IPFIX_TLS_CERT') : undefined;
  const key = transport === 'tls' ? file('JOURNEY_IPFIX_TLS_KEY') : undefined;
  return {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port !== '' ? Number(url.port) : transport === 'tls' ? 4740 : 4739,
    transport,
    activeS: num(url, 'active', 60, 1, 86_400),
    templateRefreshS: num(url, 'template-refresh', 600, 1, 86_400),
    domainId: num(url, 'domain', domainIdOf(ctx.host), 0, 0xffffffff),
    pen: num(url, 'pen', DEFAULT_PEN, 1, 0xffffffff),
    maxMessageBytes: num(url, 'mtu', transport === 'udp' ? 1400 : 16_384, 256, 65_535),
    maxPending: num(url, 'queue', 10_000, 1, 10_000_000),
    ...(transport === 'tls' ? { tls: { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}), servername: url.hostname } } : {}),
  };
}

interface LiveFlow {
  flow: FlowInfo;
  lastExportMs: number;
  exported: { orig: DirectionCounters; reply: DirectionCounters } | null;
}

/** An IPFIX exporting process for one collector. */
export class IpfixExporter implements ExportTarget {
  readonly target: string;
  private readonly templates: Record<(typeof TEMPLATE_KINDS)[number], Template>;
  private readonly live = new Map<string, LiveFlow>();
  private pending: FlowRecord[] = [];
  private sequence = 0;
  private lastTemplatesMs = Number.NEGATIVE_INFINITY;
  private udp: UdpSocket | null = null;
  private tcp: Socket | null = null;
  private tcpUp = false;
  private closed = false;
  private flushQueued = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private backoffMs = 500;
  private readonly activeTimer: NodeJS.Timeout;
  private inFlight = 0;
  private counts = { sent: 0, lost: 0, reconnects: 0, messages: 0, templates: 0 };

  constructor(
    private readonly o: IpfixOptions,
    private readonly ctx: ExportContext,
    url: string,
  ) {
    this.target = url;
    this.templates = flowTemplates(o.pen);
    this.activeTimer = setInterval(() => this.activeTimeouts(Date.now()), 1000);
    this.activeTimer.unref();
  }

  /** Opens the socket; TCP/TLS waits for the first connection (E_EXPORT if refused). */
  async start(): Promise<void> {
    if (this.o.transport === 'udp') {
      const s = createSocket(this.o.host.includes(':') ? 'udp6' : 'udp4');
      s.on('error', (e) => this.ctx.log(`${this.target}: ${e.message}`));
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.connect(this.o.port, this.o.host, () => {
          s.off('error', reject);
          resolve();
        });
      }).catch((e: Error) => {
        throw new JourneyError('E_EXPORT', `${this.target}: ${e.message}`);
      });
      this.udp = s;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      this.connectTcp((err) => (err ? reject(new JourneyError('E_EXPORT', `${this.target}: ${err.message}`)) : resolve()));
    });
  }

  private connectTcp(first?: (err: Error | null) => void): void {
    const opts = { host: this.o.host, port: this.o.port };
    const s = this.o.tls ? tlsConnect({ ...opts, ...this.o.tls }) : tcpConnect(opts);
    s.setNoDelay(true);
    const ready = this.o.tls ? 'secureConnect' : 'connect';
    s.once(ready, () => {
      this.tcp = s;
      this.tcpUp = true;
      this.backoffMs = 500;
      this.sequence = 0; // a new transport session: sequence numbers and templates start again
      this.lastTemplatesMs = Number.NEGATIVE_INFINITY;
      first?.(null);
      first = undefined;
      this.scheduleFlush();
    });
    s.on('error', (e) => {
      if (first) {
        first(e);
        first = undefined;
      } else if (this.tcpUp) this.ctx.log(`${this.target}: ${e.message}`);
    });
    s.on('close', () => {
      const was = this.tcp === s;
      this.tcpUp = false;
      if (was) this.tcp = null;
      if (this.closed || first !== undefined) return;
      if (this.reconnectTimer === null) {
        this.reconnectTimer = setTimeout(() => {
          this.reconnectTimer = null;
          this.counts.reconnects++;
          this.connectTcp();
        }, this.backoffMs);
        this.reconnectTimer.unref();
        this.backoffMs = Math.min(this.backoffMs * 2, 30_000);
      }
    });
  }

  write(ev: JourneyEvent): void {
    if (this.closed) return;
    if (ev.type === 'flow.start' || ev.type === 'flow.update') {
      const l = this.live.get(ev.flow.id);
      if (l) l.flow = ev.flow;
      else this.live.set(ev.flow.id, { flow: ev.flow, lastExportMs: ev.time, exported: null });
    } else if (ev.type === 'flow.end') {
      const l = this.live.get(ev.flow.id);
      this.live.delete(ev.flow.id);
      this.enqueue(flowRecord(ev.flow, ev as FlowEvent, l?.exported ?? null, this.ctx.host, ev.time));
    }
  }

  private activeTimeouts(now: number): void {
    const due = this.o.activeS * 1000;
    for (const l of this.live.values()) {
      if (now - l.lastExportMs < due) continue;
      this.enqueue(flowRecord(l.flow, null, l.exported, this.ctx.host, now));
      l.lastExportMs = now;
      l.exported = { orig: directionCounters(l.flow, 'orig'), reply: directionCounters(l.flow, 'reply') };
    }
  }

  private enqueue(r: FlowRecord): void {
    if (this.pending.length >= this.o.maxPending) {
      this.counts.lost++;
      return;
    }
    this.pending.push(r);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => {
      this.flushQueued = false;
      this.flush();
    });
  }

  private templateSet(): Buffer {
    this.counts.templates++;
    return encodeSet(
      TEMPLATE_SET_ID,
      TEMPLATE_KINDS.map((k) => encodeTemplateRecord(this.templates[k])),
    );
  }

  /** Encodes pending records into messages and sends them (when the transport is up). */
  private flush(): void {
    const tcp = this.o.transport !== 'udp';
    if (tcp && !this.tcpUp) return; // kept (bounded) until the collector is back
    const now = Date.now();
    const refreshDue = tcp ? this.lastTemplatesMs === Number.NEGATIVE_INFINITY : now - this.lastTemplatesMs >= this.o.templateRefreshS * 1000;
    let sets: Buffer[] = [];
    let size = MESSAGE_HEADER_BYTES;
    let records = 0;
    let cur: { tpl: Template; bufs: Buffer[]; size: number } | null = null;
    const closeSet = (): void => {
      if (cur !== null && cur.bufs.length > 0) {
        sets.push(encodeSet(cur.tpl.id, cur.bufs));
        size += cur.size;
      }
      cur = null;
    };
    const closeMessage = (): void => {
      closeSet();
      if (sets.length > 0) this.send(sets, records, now);
      sets = [];
      size = MESSAGE_HEADER_BYTES;
      records = 0;
    };
    if (refreshDue) {
      const t = this.templateSet();
      sets.push(t);
      size += t.length;
      this.lastTemplatesMs = now;
    }
    // records of one template share a data set; a message never grows past maxMessageBytes
    // (unless one record alone is larger)
    for (const r of this.pending) {
      const tpl = this.templates[r.kind];
      const len = dataRecordLength(tpl, r.record);
      const c = cur as { tpl: Template; bufs: Buffer[]; size: number } | null;
      const grow = (c?.tpl === tpl ? 0 : SET_HEADER_BYTES) + len;
      if (size + (c?.size ?? 0) + grow > this.o.maxMessageBytes && (records > 0 || sets.length > 0)) closeMessage();
      if (cur === null || (cur as { tpl: Template }).tpl !== tpl) {
        closeSet();
        cur = { tpl, bufs: [], size: SET_HEADER_BYTES };
      }
      const b = Buffer.alloc(len);
      writeDataRecord(b, 0, tpl, r.record);
      const open = cur as { tpl: Template; bufs: Buffer[]; size: number };
      open.bufs.push(b);
      open.size += len;
      records++;
    }
    this.pending = [];
    closeMessage();
  }

  private send(sets: readonly Buffer[], records: number, now: number): void {
    if (sets.length === 0) return;
    const msg = encodeMessage(sets, Math.floor(now / 1000), this.sequence, this.o.domainId);
    this.sequence = (this.sequence + records) >>> 0;
    this.counts.messages++;
    if (this.udp) {
      this.inFlight++;
      this.udp.send(msg, (err) => {
        this.inFlight--;
        if (err) this.counts.lost += records;
        else this.counts.sent += records;
      });
      return;
    }
    if (this.tcp && this.tcpUp) {
      this.inFlight++;
      this.tcp.write(msg, (err) => {
        this.inFlight--;
        if (err) this.counts.lost += records;
        else this.counts.sent += records;
      });
      return;
    }
    this.counts.lost += records;
  }

  stats() {
    const { sent, lost, reconnects, messages, templates } = this.counts;
    return { target: this.target, sent, lost, reconnects, extra: { messages, 'template sets': templates, pending: this.pending.length } };
  }

  /** Sends what is pending (flows end through the pipeline's own flow.end before), then closes. */
  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.activeTimer);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.flush();
    this.closed = true;
    for (let t = 0; this.inFlight > 0 && t < 50; t++) await new Promise((r) => setTimeout(r, 40));
    if (this.pending.length > 0) {
      this.counts.lost += this.pending.length;
      this.pending = [];
    }
    this.udp?.close();
    if (this.tcp) {
      const s = this.tcp;
      await new Promise<void>((r) => {
        const t = setTimeout(() => {
          s.destroy();
          r();
        }, 2000);
        s.end(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
}

export const ipfixTarget: ExportTargetKind<'ipfix'> = {
  scheme: 'ipfix',
  usage: 'ipfix://COLLECTOR[:4739][?transport=udp|tcp|tls&active=60&template-refresh=600]',
  async open(url, ctx) {
    const e = new IpfixExporter(ipfixOptionsFrom(url, ctx), ctx, redactUrl(url));
    await e.start();
    return e;
  },
};
