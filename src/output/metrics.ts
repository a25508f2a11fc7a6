/**
 * Prometheus metrics of `journey serve` (GET /metrics), on a registry of its own (never the
 * global one, so that several servers can live in one process, e.g. in tests).
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { JourneyEvent } from '../model/events.js';

export class ServeMetrics {
  readonly registry = new Registry();
  readonly events: Counter<'type'>;
  readonly flowsStarted: Counter;
  readonly explanations: Counter<'result'>;
  readonly flowsLive: Gauge;
  readonly flowsEvicted: Gauge;
  readonly drops: Counter<'reason'>;
  readonly captureReceived: Gauge<'iface'>;
  readonly captureKernelDropped: Gauge<'iface'>;
  readonly captureIfDropped: Gauge<'iface'>;
  readonly captureOwnDropped: Gauge<'iface'>;
  readonly clients: Gauge;
  readonly connections: Counter;
  readonly refused: Counter<'reason'>;
  readonly sent: Counter;
  readonly lost: Counter;
  readonly clientLost: Gauge<'client'>;
  readonly clientQueued: Gauge<'client'>;
  readonly badMessages: Counter<'code'>;
  readonly deadClients: Counter;
  readonly httpRequests: Counter<'path' | 'status'>;
  /** Hot-path counts, plain numbers: folded into the prom-client counters at scrape time. */
  sentCount = 0;
  lostCount = 0;
  private readonly eventCounts = new Map<string, number>();
  private readonly folded = { sent: 0, lost: 0, events: new Map<string, number>() };
  /** Called at each scrape to refresh the per-client gauges. */
  private sampleClients: (() => readonly { id: string; lost: number; queued: number }[]) | null = null;

  constructor(opts: { readonly processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    const folded = this.folded;
    const counts = this.eventCounts;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    this.events = new Counter({
      name: 'journey_events_total',
      help: 'Events produced by the pipeline, by type',
      labelNames: ['type'],
      registers,
      collect() {
        for (const [type, n] of counts) {
          const d = n - (folded.events.get(type) ?? 0);
          if (d > 0) this.inc({ type }, d);
          folded.events.set(type, n);
        }
      },
    });
    this.flowsStarted = new Counter({ name: 'journey_flows_started_total', help: 'Flows seen (flow.start events)', registers });
    this.explanations = new Counter({
      name: 'journey_explanations_total',
      help: "Flow explanations checked against the kernel's trace (--verify), by result: verified, contradicted, unverified",
      labelNames: ['result'],
      registers,
    });
    this.flowsLive = new Gauge({ name: 'journey_flows_live', help: 'Flows in the flow table (last capture.stats)', registers });
    this.flowsEvicted = new Gauge({
      name: 'journey_flows_evicted',
      help: 'Flows evicted from the table since start (last capture.stats)',
      registers,
    });
    this.drops = new Counter({
      name: 'journey_drops_total',
      help: 'Packet drops reported (drop events), by kernel reason',
      labelNames: ['reason'],
      registers,
    });
    this.captureReceived = new Gauge({
      name: 'journey_capture_received_packets',
      help: 'Packets libpcap delivered, per interface (cumulative)',
      labelNames: ['iface'],
      registers,
    });
    this.captureKernelDropped = new Gauge({
      name: 'journey_capture_kernel_dropped_packets',
      help: 'Packets the kernel dropped before capture (pcap ps_drop), per interface',
      labelNames: ['iface'],
      registers,
    });
    this.captureIfDropped = new Gauge({
      name: 'journey_capture_interface_dropped_packets',
      help: 'Packets the interface dropped (pcap ps_ifdrop), per interface',
      labelNames: ['iface'],
      registers,
    });
    this.captureOwnDropped = new Gauge({
      name: 'journey_capture_own_dropped_packets',
      help: 'Packets journey dropped itself (queue full), per interface',
      labelNames: ['iface'],
      registers,
    });
    this.clients = new Gauge({ name: 'journey_ws_clients', help: 'Connected WebSocket clients', registers });
    this.connections = new Counter({ name: 'journey_ws_connections_total', help: 'WebSocket connections accepted', registers });
    this.refused = new Counter({
      name: 'journey_ws_refused_total',
      help: 'Requests refused before the upgrade, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.sent = new Counter({
      name: 'journey_ws_messages_sent_total',
      help: 'Messages handed to WebSocket clients (all clients)',
      registers,
      collect() {
        if (self.sentCount > folded.sent) this.inc(self.sentCount - folded.sent);
        folded.sent = self.sentCount;
      },
    });
    this.lost = new Counter({
      name: 'journey_ws_messages_lost_total',
      help: "Messages dropped from slow clients' queues (all clients)",
      registers,
      collect() {
        if (self.lostCount > folded.lost) this.inc(self.lostCount - folded.lost);
        folded.lost = self.lostCount;
      },
    });
    this.clientLost = new Gauge({
      name: 'journey_ws_client_messages_lost',
      help: 'Messages lost by each connected client (slow consumer)',
      labelNames: ['client'],
      registers,
      collect: () => this.refreshClients(),
    });
    this.clientQueued = new Gauge({
      name: 'journey_ws_client_queue_length',
      help: "Messages waiting in each connected client's queue",
      labelNames: ['client'],
      registers,
    });
    this.badMessages = new Counter({
      name: 'journey_ws_bad_client_messages_total',
      help: 'Client messages refused, by error code',
      labelNames: ['code'],
      registers,
    });
    this.deadClients = new Counter({ name: 'journey_ws_dead_clients_total', help: 'Clients terminated for not answering pings', registers });
    this.httpRequests = new Counter({
      name: 'journey_http_requests_total',
      help: 'HTTP requests, by path and status',
      labelNames: ['path', 'status'],
      registers,
    });
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'journey_' });
  }

  /** Accounts one event from the pipeline. */
  observe(ev: JourneyEvent): void {
    this.eventCounts.set(ev.type, (this.eventCounts.get(ev.type) ?? 0) + 1);
    switch (ev.type) {
      case 'flow.start':
        this.flowsStarted.inc();
        break;
      case 'flow.end': {
        // counted once a flow, with its last word (a trace still awaited at flow.start may have come)
        const r = ev.flow.explanation?.verification?.result;
        if (r !== undefined) this.explanations.inc({ result: r });
        break;
      }
      case 'drop':
        this.drops.inc({ reason: ev.drop.reason });
        break;
      case 'capture.stats':
        this.flowsLive.set(ev.flows.live);
        this.flowsEvicted.set(ev.flows.evicted);
        for (const s of ev.stats) {
          this.captureReceived.set({ iface: s.iface }, s.received);
          this.captureKernelDropped.set({ iface: s.iface }, s.kernelDropped);
          this.captureIfDropped.set({ iface: s.iface }, s.ifDropped);
          this.captureOwnDropped.set({ iface: s.iface }, s.ownDropped);
        }
        break;
      default:
        break;
    }
  }

  /** The hub gives the per-client figures this way; they are read at scrape time. */
  setClientSampler(fn: () => readonly { id: string; lost: number; queued: number }[]): void {
    this.sampleClients = fn;
  }

  private refreshClients(): void {
    if (this.sampleClients === null) return;
    for (const c of this.sampleClients()) {
      this.clientLost.set({ client: c.id }, c.lost);
      this.clientQueued.set({ client: c.id }, c.queued);
    }
  }

  removeClient(id: string): void {
    this.clientLost.remove({ client: id });
    this.clientQueued.remove({ client: id });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
