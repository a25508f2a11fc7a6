/**
 * Helpers for the `journey serve` unit tests: a synthetic event stream (flows shaped like the
 * lab's: external client -> published port -> container, container -> outside), a real `ws`
 * client that records everything it receives, and the published schema compiled with ajv.
 */
import { readFileSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import WebSocket from 'ws';
import { collectGarbageNow } from '../../src/host/heap.js';

/** A full garbage collection (src/host/heap.ts: without --expose-gc). */
export function fullGc(): void {
  collectGarbageNow();
}
import { SCHEMA_VERSION, type FlowEvent, type FlowInfo, type JourneyEvent } from '../../src/model/events.js';
import type { Tuple } from '../../src/model/tuple.js';

export const SCHEMA_PATH = new URL('../../docs/event-schema.json', import.meta.url);

export function loadSchema(): Record<string, unknown> {
  return JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as Record<string, unknown>;
}

let compiled: { event: ValidateFunction; server: ValidateFunction; client: ValidateFunction } | null = null;
/** Validators for a JourneyEvent, anything the server sends, and anything a client may send. */
export function validators(): { event: ValidateFunction; server: ValidateFunction; client: ValidateFunction } {
  if (compiled === null) {
    const ajv = new Ajv2020({ allErrors: true, strict: true });
    ajv.addSchema(loadSchema());
    const id = 'https://journey.invalid/schema/events-v1.json';
    compiled = {
      event: ajv.getSchema(id)!,
      server: ajv.compile({ $ref: `${id}#/$defs/ServerMessage` }),
      client: ajv.compile({ $ref: `${id}#/$defs/ClientMessage` }),
    };
  }
  return compiled;
}

export function tuple(proto: 'tcp' | 'udp' | 'icmp', src: string, sport: number, dst: string, dport: number): Tuple {
  const protoNum = proto === 'tcp' ? 6 : proto === 'udp' ? 17 : 1;
  return { family: 4, proto, protoNum, src, dst, sport, dport, ...(proto === 'icmp' ? { icmpType: 8, icmpCode: 0 } : {}) };
}

/** External client -> 10.0.10.26:<hostPort> DNAT -> <container> 172.17.0.2:80 (seed 000). */
export function publishedFlow(id: string, sport: number, opts: { hostPort?: number; container?: string; proto?: 'tcp' | 'udp' } = {}): FlowInfo {
  const hostPort = opts.hostPort ?? 8000;
  const proto = opts.proto ?? 'tcp';
  const orig = tuple(proto, '10.0.10.5', sport, '10.0.10.26', hostPort);
  const reply = tuple(proto, '172.17.0.2', 80, '10.0.10.5', sport);
  const t0 = 1_763_870_000_000_000 + sport;
  return {
    id,
    orig,
    reply,
    nat: { dnat: { from: `10.0.10.26:${hostPort}`, to: '172.17.0.2:80' }, snat: null },
    legs: [
      { iface: 'eth0', direction: 'orig', tuple: orig, firstUs: t0, lastUs: t0 + 900, packets: 5, bytes: 420 },
      {
        iface: 'docker0',
        direction: 'orig',
        tuple: tuple(proto, '10.0.10.5', sport, '172.17.0.2', 80),
        firstUs: t0 + 31,
        lastUs: t0 + 930,
        packets: 5,
        bytes: 420,
      },
      { iface: 'docker0', direction: 'reply', tuple: reply, firstUs: t0 + 120, lastUs: t0 + 950, packets: 4, bytes: 800 },
      {
        iface: 'eth0',
        direction: 'reply',
        tuple: tuple(proto, '10.0.10.26', hostPort, '10.0.10.5', sport),
        firstUs: t0 + 150,
        lastUs: t0 + 980,
        packets: 4,
        bytes: 800,
      },
    ],
    names: [
      { addr: '172.17.0.2', container: opts.container ?? 'web', network: 'bridge', published: `${hostPort}/${proto} -> 80` },
      { addr: '10.0.10.5' },
    ],
    ...(proto === 'tcp' ? { tcpState: 'ESTABLISHED' } : {}),
    ctStatus: ['SEEN_REPLY', 'ASSURED', 'CONFIRMED', 'DST_NAT', 'DST_NAT_DONE'],
    legDelayUs: 31,
    explanation: {
      verdict: 'accept',
      steps: [
        {
          hook: 'prerouting',
          family: 'ip',
          table: 'nat',
          chain: 'PREROUTING',
          rule: '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER',
          ruleNumber: 1,
          handle: null,
          verdict: 'jump',
        },
        {
          hook: 'prerouting',
          family: 'ip',
          table: 'nat',
          chain: 'DOCKER',
          rule: `-A DOCKER ! -i docker0 -p ${proto} -m ${proto} --dport ${hostPort} -j DNAT --to-destination 172.17.0.2:80`,
          ruleNumber: 2,
          handle: null,
          verdict: 'dnat',
          meaning: 'published port',
        },
        {
          hook: 'forward',
          family: 'ip',
          table: 'filter',
          chain: 'FORWARD',
          rule: '-A FORWARD -j DOCKER-USER',
          ruleNumber: 1,
          handle: null,
          verdict: 'jump',
        },
        {
          hook: 'forward',
          family: 'ip',
          table: 'filter',
          chain: 'DOCKER-USER',
          rule: '-A DOCKER-USER -j RETURN',
          ruleNumber: 1,
          handle: null,
          verdict: 'return',
        },
        {
          hook: 'forward',
          family: 'ip',
          table: 'filter',
          chain: 'FORWARD',
          rule: '-A FORWARD -o docker0 -j DOCKER',
          ruleNumber: 4,
          handle: null,
          verdict: 'jump',
        },
        {
          hook: 'forward',
          family: 'ip',
          table: 'filter',
          chain: 'DOCKER',
          rule: `-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p ${proto} -m ${proto} --dport 80 -j ACCEPT`,
          ruleNumber: 1,
          handle: null,
          verdict: 'accept',
        },
        {
          hook: 'postrouting',
          family: 'ip',
          table: 'nat',
          chain: 'POSTROUTING',
          rule: null,
          ruleNumber: null,
          handle: null,
          verdict: 'policy-accept',
        },
      ],
      nat: { dnat: { from: `10.0.10.26:${hostPort}`, to: '172.17.0.2:80' }, snat: null },
      packet_out: { proto, src: '10.0.10.5', sport, dst: '172.17.0.2', dport: 80, iif: 'eth0', oif: 'docker0' },
      indeterminate: [],
    },
    drops: [],
  };
}

/** Container 172.17.0.3 -> outside 10.0.10.5:9000, MASQUERADEd to 10.0.10.26 (seed 001). */
export function masqueradeFlow(id: string, sport: number): FlowInfo {
  const orig = tuple('udp', '172.17.0.3', sport, '10.0.10.5', 9000);
  const reply = tuple('udp', '10.0.10.5', 9000, '10.0.10.26', sport);
  const t0 = 1_763_870_000_000_000 + sport;
  return {
    id,
    orig,
    reply,
    nat: { dnat: null, snat: { from: '172.17.0.3', to: '10.0.10.26' } },
    legs: [
      { iface: 'docker0', direction: 'orig', tuple: orig, firstUs: t0, lastUs: t0, packets: 1, bytes: 60 },
      {
        iface: 'eth0',
        direction: 'orig',
        tuple: tuple('udp', '10.0.10.26', sport, '10.0.10.5', 9000),
        firstUs: t0 + 20,
        lastUs: t0 + 20,
        packets: 1,
        bytes: 60,
      },
    ],
    names: [{ addr: '172.17.0.3', container: 'client', network: 'bridge' }],
    ctStatus: ['CONFIRMED', 'SRC_NAT', 'SRC_NAT_DONE'],
    explanation: {
      verdict: 'accept',
      steps: [
        {
          hook: 'forward',
          family: 'ip',
          table: 'filter',
          chain: 'FORWARD',
          rule: '-A FORWARD -i docker0 ! -o docker0 -j ACCEPT',
          ruleNumber: 7,
          handle: null,
          verdict: 'accept',
        },
        {
          hook: 'postrouting',
          family: 'ip',
          table: 'nat',
          chain: 'POSTROUTING',
          rule: '-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE',
          ruleNumber: 1,
          handle: null,
          verdict: 'masquerade',
        },
      ],
      nat: { dnat: null, snat: { from: '172.17.0.3', to: '10.0.10.26' } },
      packet_out: { proto: 'udp', src: '10.0.10.26', sport, dst: '10.0.10.5', dport: 9000, iif: 'docker0', oif: 'eth0' },
      indeterminate: [],
    },
    drops: [],
  };
}

/** Builds events with increasing seq numbers. */
export class EventFactory {
  seq = 0;
  flow(type: FlowEvent['type'], flow: FlowInfo): FlowEvent {
    return { v: SCHEMA_VERSION, seq: ++this.seq, time: Date.now(), type, flow };
  }
  others(): JourneyEvent[] {
    return [
      {
        v: SCHEMA_VERSION,
        seq: ++this.seq,
        time: Date.now(),
        type: 'drop',
        flowId: 'c1',
        drop: {
          timeUs: 1,
          reason: 'NETFILTER_DROP',
          iface: 'docker1',
          tuple: tuple('tcp', '172.17.0.3', 41000, '172.20.0.2', 80),
          rule: { table: 'filter', chain: 'DOCKER-ISOLATION-STAGE-2', rule: '-A DOCKER-ISOLATION-STAGE-2 -o docker1 -j DROP' },
        },
      },
      { v: SCHEMA_VERSION, seq: ++this.seq, time: Date.now(), type: 'ruleset.changed', tables: ['nat', 'filter'] },
      {
        v: SCHEMA_VERSION,
        seq: ++this.seq,
        time: Date.now(),
        type: 'capture.stats',
        stats: [{ iface: 'eth0', received: 10, kernelDropped: 0, ifDropped: 0, ownDropped: 0, skipped: { truncated: 1 } }],
        flows: { live: 3, evicted: 0 },
      },
      { v: SCHEMA_VERSION, seq: ++this.seq, time: Date.now(), type: 'notice', message: 'no drop reasons: eBPF unavailable: EPERM', code: 'E_NATIVE' },
    ];
  }
}

/** A synthetic EventSource (what the server attaches to). */
export class SyntheticSource extends EventEmitter {
  stopped = false;
  emitEvent(ev: JourneyEvent): void {
    this.emit('event', ev);
  }
  stop(): void {
    this.stopped = true;
  }
}

/** A real ws client that keeps everything it receives. */
export class RecordingClient {
  readonly messages: Record<string, unknown>[] = [];
  /** Messages received, by type (also when `store` is false). */
  readonly counts = new Map<string, number>();
  readonly ws: WebSocket;
  closeCode: number | null = null;
  readonly opened: Promise<void>;
  readonly closed: Promise<number>;
  private waiters: { pred: () => boolean; resolve: () => void }[] = [];

  constructor(
    url: string,
    opts: WebSocket.ClientOptions = {},
    private readonly store = true,
  ) {
    this.ws = new WebSocket(url, opts);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { statusCode: res.statusCode })));
    });
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code) => {
        this.closeCode = code;
        resolve(code);
        this.check();
      }),
    );
    this.ws.on('error', () => undefined); // the close that follows is what tests look at
    this.ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as Record<string, unknown>;
      const type = String(m['type']);
      this.counts.set(type, (this.counts.get(type) ?? 0) + 1);
      if (this.store || (type !== 'flow.start' && type !== 'flow.update' && type !== 'flow.end')) this.messages.push(m);
      this.check();
    });
  }

  send(msg: unknown): void {
    this.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  count(type: string): number {
    return this.counts.get(type) ?? 0;
  }

  ofType(type: string): Record<string, unknown>[] {
    return this.messages.filter((m) => m['type'] === type);
  }

  /** Resolves when pred() holds (checked on every message), rejects after timeoutMs. */
  until(pred: () => boolean, timeoutMs = 5000): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: () => {
          clearTimeout(t);
          resolve();
        },
      };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`timed out; got ${this.messages.length} messages: ${JSON.stringify(this.messages.slice(-3)).slice(0, 600)}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  private check(): void {
    this.waiters = this.waiters.filter((w) => {
      if (w.pred()) {
        w.resolve();
        return false;
      }
      return true;
    });
  }

  close(): void {
    this.ws.terminate();
  }
}
