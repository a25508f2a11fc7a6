/**
 * The live pipeline, assembled: capture -> decode -> conntrack join -> Docker names -> explanation
 * -> JourneyEvents. Used by `journey watch`, `journey serve` and `journey verify hairpin`.
 *
 *   import { startPipeline } from '../correlate/pipeline.js';
 *   const p = await startPipeline({ netns: 'jl-c2-host' });          // live, every bridge + uplink
 *   const p = await startPipeline({ read: ['x.pcapng'], conntrackSnapshot: 'ct.txt' }); // replay
 *   p.on('event', (ev: JourneyEvent) => ...);     // or: for await (const ev of p) ...
 *   await p.stop();                               // flows end (reason "shutdown"), stats emitted
 *   await p.done;                                 // resolves when a replay is finished / after stop()
 *
 * Events (src/model/events.ts, schema docs/event-schema.json): `notice` first (what runs, what
 * is missing: no Docker, conntrack fallback, no explanations...), then flow.start / flow.update /
 * flow.end, `ruleset.changed` when the live ruleset changes (flows are re-explained), and
 * `capture.stats` every `statsIntervalMs` and once at the end. `seq` increases by one per event.
 * A replay ends by itself: every flow ends with reason "replay-end", then `done` resolves.
 *
 * Setup errors are thrown from startPipeline (JourneyError: E_NO_NETNS, E_CAPTURE, E_CONNTRACK,
 * E_PARSE...). Errors while running (a capture that died, conntrack -E exiting) become `notice`
 * events and the pipeline keeps going with what is left; `p.on('error')` is never required.
 */
import { EventEmitter } from 'node:events';
import { spawn, type ChildProcess } from 'node:child_process';
import { run, inNetns } from '../host/exec.js';
import { JourneyError } from '../model/errors.js';
import type { ConntrackEvent, ConntrackSource } from '../model/conntrack.js';
import { SCHEMA_VERSION, type EndpointName, type FlowInfo, type JourneyEvent } from '../model/events.js';
import type { CaptureStats, FrameBatch, Observation } from '../model/observation.js';
import type { Tuple } from '../model/tuple.js';
import { openConntrackSource, type ConntrackBackend } from '../conntrack/select.js';
import { SnapshotConntrackSource } from '../conntrack/snapshot-source.js';
import { connectDocker, DockerIndex, type DockerInventory, type DockerSnapshot } from '../docker/inventory.js';
import { processSockets } from '../docker/daemon.js';
import { decodeFrame, observationFromView, PacketView, SkipCounters } from '../decode/index.js';
import { createPcapngWriter, type PcapngWriter } from '../capture/pcapng-writer.js';
import { Correlator, type CorrelatorStats, type NameResolver } from './correlator.js';
import { createFlowExplainer, type ReloadableExplainer, type RulesetFilesSpec } from './explainer.js';
import { DockerProxyLinker } from './proxy-link.js';
import { bridgeNames, containerBridges, LinkWatcher, listLinks } from '../capture/devices.js';
import { openLiveSource, ReplaySource, type FrameSource } from './frame-sources.js';
import { access, readFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { openKernelEvents, joinDropRule, HookProof, type KernelEvents, type KernelDrop } from '../native/index.js';
import { createInterface } from 'node:readline';

export interface PipelineOptions {
  /** Network namespace of the Docker host (name under /var/run/netns, path, or pid). */
  readonly netns?: string;
  /** Interfaces to capture (tcpdump's -i); default: every Docker bridge and the uplink. */
  readonly interfaces?: readonly string[];
  /** Capture filter in tcpdump syntax (compiled by libpcap; live capture only). */
  readonly filter?: string;
  /** Capture backend: native (journey's libpcap addon, default; pcap when missing), pcap (node-pcap) or cap. */
  readonly backend?: 'native' | 'pcap' | 'cap';
  readonly snaplen?: number;
  readonly bufferSizeMiB?: number;
  readonly promisc?: boolean;
  /** Docker endpoint (--docker-host / DOCKER_HOST); false = do not use Docker. */
  readonly dockerHost?: string | false;
  /** Replay: Docker names from a recorded snapshot (DockerSnapshot JSON) instead of a daemon. */
  readonly dockerSnapshot?: string;
  /** Replay: capture files (pcap/pcapng), merged by time. */
  readonly read?: readonly string[];
  /** Replay: conntrack snapshot file(s) (conntrack -L / -E output, /proc format, JSON lines). */
  readonly conntrackSnapshot?: string | readonly string[];
  /** Live conntrack source: auto (netlink, then the conntrack tool, then /proc), or forced. */
  readonly conntrack?: ConntrackBackend;
  /** Keep what was captured in a pcapng file. */
  readonly write?: string;
  /**
   * Live: the kernel's view through eBPF (src/native, engineer D's): drops with the kernel's reason
   * (joined to flows and to the rule that dropped them) and tuples at the netfilter hooks (the
   * in-kernel NAT proof, FlowInfo.hookTuples). Default true; what the kernel refuses is noticed.
   */
  readonly kernel?: boolean;
  /**
   * Kernel drop reasons never reported, by the kernel's name ("NO_SOCKET"...): filtered in the
   * kernel (openKernelEvents' ignoreReasons). An unknown name is an E_USAGE error.
   */
  readonly ignoreDropReasons?: readonly string[];
  /**
   * Drop reasons not reported when the drop belongs to no flow (default ["NOT_SPECIFIED",
   * "OTHERHOST"]: IPv6 router solicitations and other packets the kernel frees without a reason,
   * noise on any host); a drop with such a reason that joins a flow is still reported — except
   * OTHERHOST, which is never a flow's fate: the host's copy of a frame that the (promiscuous)
   * bridge forwarded from port to port. [] reports every drop.
   */
  readonly quietDropReasons?: readonly string[];
  /** Explain flows with the simulator (default true; a replay needs `rulesetFiles`). */
  readonly explain?: boolean;
  /** Replay: the recorded ruleset and host context to explain flows with. */
  readonly rulesetFiles?: RulesetFilesSpec;
  readonly maxFlows?: number;
  readonly idleTimeoutMs?: number;
  /** How long packets wait for their conntrack entry (default 2000 ms). */
  readonly holdMs?: number;
  readonly startDelayMs?: number;
  readonly updateIntervalMs?: number;
  /** capture.stats period (default 5000 ms; 0 = only at the end). */
  readonly statsIntervalMs?: number;
  /** Max events buffered for a slow async-iterator consumer before `lost` is reported (default 10000). */
  readonly iteratorBuffer?: number;
}

export interface PipelineStats {
  readonly capture: readonly CaptureStats[];
  readonly flows: CorrelatorStats;
  readonly decodeSkipped: Readonly<Record<string, number>>;
  readonly nonIp: number;
  readonly written?: { readonly frames: number; readonly dropped: number };
  /** Kernel drops left out because they belong to no flow and their reason is quiet (quietDropReasons). */
  readonly dropsQuiet?: number;
}

export interface Pipeline extends AsyncIterable<JourneyEvent> {
  on(event: 'event', fn: (ev: JourneyEvent) => void): this;
  off(event: 'event', fn: (ev: JourneyEvent) => void): this;
  /** Stops capture and sources, ends every flow, emits the final capture.stats. Idempotent. */
  stop(): Promise<void>;
  /** Resolves when the pipeline has stopped (replay finished, or after stop()). */
  readonly done: Promise<void>;
  stats(): PipelineStats;
  /** Current flows (for --top / serve snapshots). */
  flows(): FlowInfo[];
  /** What runs and what is missing, as said in the opening notices. */
  readonly notices: readonly string[];
  readonly interfaces: readonly string[];
  readonly mode: 'live' | 'replay';
  readonly docker: DockerInventory | null;
  /** Set when a replay could not be read to the end (the events up to there were delivered). */
  readonly error: JourneyError | null;
}

/** The default route's interface in the namespace (the uplink). */
export async function uplinkInterface(netns?: string): Promise<string | null> {
  try {
    const r = await run(['ip', '-j', 'route', 'show', 'default'], { ...(netns !== undefined ? { netns } : {}), timeoutMs: 5_000 });
    const routes = JSON.parse(r.stdout || '[]') as { dev?: string }[];
    return routes.find((x) => typeof x.dev === 'string')?.dev ?? null;
  } catch {
    return null;
  }
}

/**
 * The host's bridges: all of them (`all`), or the ones Docker made (docker0, br-<id>, any bridge with
 * a container veth as a port: capture/devices.ts) when the Engine API is not reachable.
 */
export async function bridgeInterfaces(netns?: string, all = false): Promise<string[]> {
  try {
    const links = await listLinks(netns);
    return all ? bridgeNames(links) : containerBridges(links);
  } catch {
    return [];
  }
}

class PipelineImpl extends EventEmitter implements Pipeline {
  readonly notices: string[] = [];
  interfaces: string[] = [];
  mode: 'live' | 'replay';
  docker: DockerInventory | null = null;
  error: JourneyError | null = null;
  done: Promise<void>;
  private resolveDone!: () => void;
  private correlator!: Correlator;
  private frames: FrameSource | null = null;
  private ct: ConntrackSource | null = null;
  private explainer: ReloadableExplainer | null = null;
  private writer: PcapngWriter | null = null;
  private tickTimer: NodeJS.Timeout | null = null;
  private statsTimer: NodeJS.Timeout | null = null;
  private rulesetWatch: ChildProcess | null = null;
  private linkWatch: LinkWatcher | null = null;
  private kernel: KernelEvents | null = null;
  private readonly hookProof = new HookProof(50_000);
  private stopping: Promise<void> | null = null;
  private readonly view = new PacketView();
  private readonly skips = new SkipCounters();
  private nonIp = 0;
  private dropsQuiet = 0;
  private readonly quietReasons: ReadonlySet<string>;
  private staticIndex: DockerIndex | null = null;
  private readonly obsBuf: Observation[] = [];
  private clearNames: () => void = () => {};

  constructor(private readonly opts: PipelineOptions) {
    super();
    this.mode = opts.read !== undefined && opts.read.length > 0 ? 'replay' : 'live';
    this.quietReasons = new Set(opts.quietDropReasons ?? ['NOT_SPECIFIED', 'OTHERHOST']);
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  nextSeq(): number {
    return this.correlator.nextSeq();
  }

  /**
   * Events said before the pipeline is released (while it sets up, and until the setImmediate
   * after startPipeline returns) wait here, in order; null once released. Every event goes
   * through here exactly once, so none is delivered twice (a listener that attaches right after
   * startPipeline returns sees the held ones first, then the rest, each once).
   */
  private held: JourneyEvent[] | null = [];

  private emitEvent(ev: JourneyEvent): void {
    if (this.held !== null) this.held.push(ev);
    else this.emit('event', ev);
  }

  /** Delivers the held events, then lets events through as they come. Idempotent. */
  release(): void {
    const held = this.held;
    if (held === null) return;
    this.held = null;
    for (const ev of held) this.emit('event', ev);
  }

  notice(message: string, code?: string): void {
    this.notices.push(message);
    const ev: JourneyEvent = {
      v: SCHEMA_VERSION,
      seq: this.nextSeq(),
      time: Date.now(),
      type: 'notice',
      message,
      ...(code !== undefined ? { code } : {}),
    };
    this.emitEvent(ev);
  }

  async init(): Promise<void> {
    const o = this.opts;
    const pendingNotices: string[] = [];
    // Docker names
    if (o.dockerSnapshot !== undefined) {
      try {
        this.staticIndex = new DockerIndex(JSON.parse(await readFile(o.dockerSnapshot, 'utf8')) as DockerSnapshot);
      } catch (e) {
        throw new JourneyError('E_PARSE', `${o.dockerSnapshot}: not a Docker snapshot (${(e as Error).message})`);
      }
    } else if (o.dockerHost !== false && (this.mode === 'live' || o.dockerHost !== undefined)) {
      const { inventory, reason } = await connectDocker(o.dockerHost !== undefined ? { dockerHost: o.dockerHost } : {});
      this.docker = inventory;
      if (reason) pendingNotices.push(`${reason}; addresses are shown as they are`);
      if (inventory) {
        const s = inventory.snapshot;
        pendingNotices.push(
          `docker: ${s.containers.length} containers, networks ${s.networks
            .filter((n) => n.bridge)
            .map((n) => `${n.name}(${n.bridge})`)
            .join(
              ' ',
            )}; userland-proxy ${s.userlandProxy === false ? 'off' : s.userlandProxy === true ? 'on' : 'unknown'} (${s.userlandProxySource})`,
        );
        inventory.on('notice', (m: string) => this.notice(m));
        inventory.on('change', () => this.onDockerChange());
      }
    }
    // names are shared between flows (one object per address/port), dropped when Docker changes
    const nameCache = new Map<string, EndpointName | null>();
    this.clearNames = () => nameCache.clear();
    const names: NameResolver | undefined =
      this.docker || this.staticIndex
        ? (addr, port, proto) => {
            const k = `${addr}|${port ?? ''}|${proto}`;
            let n = nameCache.get(k);
            if (n === undefined) {
              n = this.index()?.nameFor(addr, port, proto, (a) => this.explainer?.isLocal(a) ?? null) ?? null;
              if (nameCache.size > 100_000) nameCache.clear();
              nameCache.set(k, n);
            }
            return n;
          }
        : undefined;
    // explanations
    const replayRules = this.mode === 'replay' ? o.rulesetFiles : undefined;
    this.explainer = await createFlowExplainer({
      ...(o.netns !== undefined ? { netns: o.netns } : {}),
      enabled: o.explain !== false && (this.mode === 'live' || replayRules !== undefined),
      ...(replayRules ? { files: replayRules } : {}),
    });
    if (this.explainer.unavailable !== null && o.explain !== false) {
      pendingNotices.push(
        this.mode === 'replay' && !replayRules
          ? 'no explanations in a replay without the recorded ruleset (--ruleset FILE)'
          : this.explainer.unavailable,
      );
    }
    const proxyLinker = new DockerProxyLinker({
      proxies: () => this.index()?.snapshot.proxies ?? [],
      gateways: () => new Set((this.index()?.snapshot.networks ?? []).flatMap((n) => n.gateways)),
      ...(this.mode === 'live' ? { sockets: (pid: number) => processSockets(pid) } : {}),
      isLocal: (a: string) => this.explainer?.isLocal(a) ?? null,
    });
    this.correlator = new Correlator({
      emit: (ev) => this.emitEvent(ev),
      ...(names ? { names } : {}),
      ...(this.explainer.unavailable === null ? { explainer: this.explainer } : {}),
      proxyLinker,
      ...(this.mode === 'live' && o.kernel !== false ? { hookTuples: (t: Tuple) => this.hookProof.get(t) } : {}),
      ...(o.maxFlows !== undefined ? { maxFlows: o.maxFlows } : {}),
      ...(o.idleTimeoutMs !== undefined ? { idleTimeoutMs: o.idleTimeoutMs } : {}),
      ...(o.holdMs !== undefined ? { holdMs: o.holdMs } : {}),
      ...(o.startDelayMs !== undefined ? { startDelayMs: o.startDelayMs } : {}),
      ...(o.updateIntervalMs !== undefined ? { updateIntervalMs: o.updateIntervalMs } : {}),
    });
    for (const n of pendingNotices) this.notice(n);

    // conntrack
    const opened = await openConntrackSource({
      ...(o.netns !== undefined ? { netns: o.netns } : {}),
      ...(o.conntrack !== undefined ? { backend: o.conntrack } : {}),
      ...(this.mode === 'replay'
        ? { snapshot: o.conntrackSnapshot ?? [] }
        : o.conntrackSnapshot !== undefined
          ? { snapshot: o.conntrackSnapshot }
          : {}),
    });
    this.ct = opened.source;
    for (const n of opened.notices) this.notice(n);
    if (this.mode === 'replay' && (o.conntrackSnapshot === undefined || (Array.isArray(o.conntrackSnapshot) && o.conntrackSnapshot.length === 0))) {
      this.notice('replay without a conntrack snapshot (--conntrack FILE): packets are grouped by tuple, NAT legs are not joined');
    }
    const noSnapshot =
      this.mode === 'replay' && (o.conntrackSnapshot === undefined || (Array.isArray(o.conntrackSnapshot) && o.conntrackSnapshot.length === 0));
    const dump = noSnapshot ? [] : await this.ct.dump();
    if (this.mode === 'replay' && this.ct instanceof SnapshotConntrackSource && this.ct.events.some((e) => e.time > 0)) {
      // an event log (conntrack -E -o timestamp): replayed in time order with the packets, as live
      this.ctTimeline = this.ct.events.filter((e) => e.time > 0).sort((a, b) => a.time - b.time);
      const withEvents = new Set(this.ctTimeline.map((e) => e.entry.id));
      this.correlator.loadDump(dump.filter((e) => !withEvents.has(e.id)));
    } else {
      this.correlator.loadDump(dump);
    }
    if (this.ct instanceof SnapshotConntrackSource && this.ct.skipped > 0)
      this.notice(`conntrack snapshot: ${this.ct.skipped} lines could not be read`);

    // capture
    if (o.write !== undefined) this.writer = createPcapngWriter(o.write, { application: 'journey' });
    if (this.mode === 'replay') {
      for (const f of o.read ?? []) {
        try {
          await access(f, constants.R_OK);
        } catch (e) {
          throw new JourneyError('E_PARSE', `${f}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file: f });
        }
      }
      if (o.filter !== undefined) this.notice('the capture filter applies to live capture only; use the display filters on a replay');
      this.frames = new ReplaySource(o.read ?? []);
    } else {
      this.interfaces = [...(o.interfaces ?? [])];
      if (this.interfaces.length === 0) {
        const bridges = this.docker ? this.docker.bridges() : await bridgeInterfaces(o.netns);
        const existing = new Set(await bridgeInterfaces(o.netns, true));
        const up = await uplinkInterface(o.netns);
        // a Docker network whose bridge does not exist yet (no container) is skipped until it appears
        this.interfaces = [...new Set([...(up ? [up] : []), ...bridges.filter((b) => existing.has(b) || !this.docker)])];
        if (!up) this.notice('no default route: uplink not captured (give -i IFACE)');
      }
      if (this.interfaces.length === 0)
        throw new JourneyError('E_CAPTURE', 'no interface to capture on: no Docker bridge and no default route (give -i IFACE)');
      const live = await openLiveSource({
        interfaces: this.interfaces,
        ...(o.netns !== undefined ? { netns: o.netns } : {}),
        ...(o.filter !== undefined ? { filter: o.filter } : {}),
        ...(o.snaplen !== undefined ? { snaplen: o.snaplen } : {}),
        ...(o.bufferSizeMiB !== undefined ? { bufferSizeMiB: o.bufferSizeMiB } : {}),
        ...(o.promisc !== undefined ? { promisc: o.promisc } : {}),
        ...(o.backend !== undefined ? { backend: o.backend } : {}),
      });
      this.frames = live.source;
      if (live.notice) this.notice(live.notice);
      if (!this.docker && (o.interfaces ?? []).length === 0) {
        // no Engine API: bridges that appear later are found by their container veths
        this.linkWatch = new LinkWatcher(o.netns, () => this.followBridges());
        this.linkWatch.start();
      }
      this.notice(`capturing on ${this.interfaces.join(', ')}${o.netns !== undefined ? ` in ${o.netns}` : ''} (conntrack: ${this.ct.kind})`);
    }
  }

  private index(): DockerIndex | null {
    return this.docker?.index ?? this.staticIndex;
  }

  private onDockerChange(): void {
    this.clearNames();
    this.followBridges();
  }

  /** New Docker bridges join the capture (from the Engine API, or the host's bridges with container veths). */
  private followBridges(): void {
    if (this.mode !== 'live' || this.opts.interfaces?.length) return;
    void Promise.all([bridgeInterfaces(this.opts.netns, true), this.docker ? null : bridgeInterfaces(this.opts.netns)]).then(
      ([existing, guessed]) => {
        for (const b of this.docker?.bridges() ?? guessed ?? []) {
          if (existing.includes(b) && !this.interfaces.includes(b)) {
            this.interfaces.push(b);
            this.frames?.addInterface?.(b);
            this.notice(`capture: new bridge ${b}`);
          }
        }
      },
    );
  }

  private onBatch(b: FrameBatch): void {
    this.writer?.writeBatch(b);
    const v = this.view;
    const out = this.obsBuf;
    out.length = 0;
    for (let i = 0; i < b.count; i++) {
      if (!decodeFrame(b, i, v, this.skips)) continue;
      const obs = observationFromView(v, b.iface);
      if (obs === undefined) {
        this.nonIp++;
        continue;
      }
      if (this.mode === 'replay') {
        // a replay keeps the live rhythm: time moves with the packets, ticks every 100 ms of it
        const ms = obs.timeUs / 1000;
        const next = this.ctTimeline[this.ctNext];
        if (next !== undefined && next.time <= ms) {
          this.correlator.onObservations(out);
          out.length = 0;
          this.feedConntrack(ms);
        }
        if (ms - this.replayTickMs >= 100) {
          this.correlator.onObservations(out);
          out.length = 0;
          this.correlator.tick(ms);
          this.replayTickMs = ms;
        }
      }
      out.push(obs);
    }
    this.correlator.onObservations(out);
    out.length = 0;
  }
  private replayTickMs = 0;
  private ctTimeline: ConntrackEvent[] = [];
  private ctNext = 0;

  /** Replay: delivers the recorded conntrack events up to `ms` (all of them without `ms`). */
  private feedConntrack(ms = Number.POSITIVE_INFINITY): void {
    const batch: ConntrackEvent[] = [];
    while (this.ctNext < this.ctTimeline.length && (this.ctTimeline[this.ctNext] as ConntrackEvent).time <= ms) {
      batch.push(this.ctTimeline[this.ctNext++] as ConntrackEvent);
    }
    if (batch.length > 0) this.correlator.onConntrack(batch);
  }

  private onConntrack(evs: readonly ConntrackEvent[]): void {
    this.correlator.onConntrack(evs);
  }

  private statsEvent(): void {
    const s = this.correlator.stats();
    this.emitEvent({
      v: SCHEMA_VERSION,
      seq: this.nextSeq(),
      time: Date.now(),
      type: 'capture.stats',
      stats: this.captureStats(),
      flows: { live: s.flowsLive, evicted: s.flowsEvicted },
    });
  }

  private captureStats(): CaptureStats[] {
    const skipped = this.skips.snapshot();
    return (this.frames?.stats() ?? []).map((c) => ({ ...c, skipped: { ...c.skipped, ...skipped } }));
  }

  /**
   * Follows ruleset changes with `nft monitor ruleset` in the namespace (iptables-nft changes are
   * nftables changes too): after 500 ms of quiet the ruleset is re-read, live flows are
   * re-explained (the correlator sees the new generation) and `ruleset.changed` names the tables.
   */
  private watchRuleset(): void {
    if (!this.explainer || this.explainer.unavailable !== null || this.mode !== 'live') return;
    const [cmd, ...args] = inNetns(['nft', 'monitor', 'ruleset'], this.opts.netns);
    const child = spawn(cmd ?? 'nft', args, { stdio: ['ignore', 'pipe', 'ignore'] });
    this.rulesetWatch = child;
    child.on('error', () => this.notice('ruleset changes not followed: nft monitor unavailable'));
    let timer: NodeJS.Timeout | null = null;
    const tables = new Set<string>();
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m =
        /^(?:add|insert|delete|replace|flush|update|destroy|rename) (?:rule|chain|table|set|element|map|flowtable|counter|quota|limit) (\w+) (\S+)/.exec(
          line.trim(),
        );
      if (m) tables.add(`${m[1]} ${m[2]}`);
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        const changed = [...tables].sort();
        tables.clear();
        void this.explainer?.reload().then(() => {
          if (this.stopping) return;
          this.emitEvent({ v: SCHEMA_VERSION, seq: this.nextSeq(), time: Date.now(), type: 'ruleset.changed', tables: changed });
        });
      }, 500);
    });
  }

  async run(): Promise<void> {
    if (this.stopping) return; // stopped before it ran (e.g. stop() right after startPipeline)
    const frames = this.frames as FrameSource;
    const ct = this.ct as ConntrackSource;
    const statsMs = this.opts.statsIntervalMs ?? 5_000;
    if (this.mode === 'live') {
      await ct.start(
        (evs) => this.onConntrack(evs),
        (e) => this.notice(`conntrack: ${e.message}`, (e as JourneyError).code),
      );
      this.tickTimer = setInterval(() => this.correlator.tick(Date.now()), 100);
      if (statsMs > 0) this.statsTimer = setInterval(() => this.statsEvent(), statsMs);
      this.watchRuleset();
      if (this.opts.kernel !== false) await this.startKernel();
      await frames.start(
        (b) => this.onBatch(b),
        (e) => this.notice(e.message, (e as JourneyError).code),
      );
      return;
    }
    // replay: runs to the end by itself
    void (async () => {
      try {
        await frames.start(
          (b) => this.onBatch(b),
          (e) => this.notice(e.message, (e as JourneyError).code),
        );
      } catch (e) {
        this.notice(`replay: ${(e as Error).message}`, (e as JourneyError).code ?? 'E_PARSE');
        this.error = e instanceof JourneyError ? e : new JourneyError('E_PARSE', `replay: ${(e as Error).message}`, {}, { cause: e });
      }
      // conntrack events after the last packet (destroys) still count, in their own time
      for (const ev of this.ctTimeline.slice(this.ctNext)) {
        this.correlator.onConntrack([ev]);
        this.correlator.tick(ev.time);
      }
      this.ctNext = this.ctTimeline.length;
      await this.stopWith('replay-end');
    })();
  }

  /** eBPF drops and hook tuples; never fails the pipeline (what is missing is noticed). */
  private async startKernel(): Promise<void> {
    try {
      const ignore = this.opts.ignoreDropReasons ?? [];
      const k = await openKernelEvents({
        ...(this.opts.netns !== undefined ? { netns: this.opts.netns } : {}),
        ...(ignore.length > 0 ? { ignoreReasons: ignore } : {}),
      });
      this.kernel = k;
      for (const l of k.lost) this.notice(`kernel: ${l}`);
      k.onHook((hooks) => this.hookProof.add(hooks));
      k.onDrop((drops) => {
        for (const d of drops) this.onKernelDrop(d);
      });
      k.onLost((n) => this.notice(`kernel: ${n} events lost in the kernel ring buffer`));
    } catch (e) {
      // a drop reason this kernel does not know is the user's mistake: said, not worked around
      if ((e as JourneyError).code === 'E_USAGE') throw e;
      this.notice(`kernel: no drop reasons or hook tuples (${(e as Error).message})`, (e as JourneyError).code);
    }
  }

  private onKernelDrop(raw: KernelDrop): void {
    const ex = this.explainer;
    const joined = ex && ex.unavailable === null ? joinDropRule(raw, (spec) => ex.explainSpec(spec)) : raw;
    const drop = { timeUs: joined.timeUs, reason: joined.reason, iface: joined.iface, tuple: joined.tuple, rule: joined.rule };
    // OTHERHOST: a copy of a frame the bridge forwarded port to port, handed to the host's stack
    // because the bridge capture is promiscuous, and discarded there: never the flow's fate
    if (drop.reason === 'OTHERHOST' && this.quietReasons.has('OTHERHOST')) {
      this.dropsQuiet++;
      return;
    }
    const flowId = this.correlator.onDrop(drop, joined.ct?.orig ?? null);
    if (flowId === null && this.quietReasons.has(drop.reason)) {
      this.dropsQuiet++;
      return;
    }
    this.emitEvent({ v: SCHEMA_VERSION, seq: this.nextSeq(), time: Date.now(), type: 'drop', drop, flowId });
  }

  flows(): FlowInfo[] {
    return this.correlator.snapshot();
  }

  stats(): PipelineStats {
    return {
      capture: this.captureStats(),
      flows: this.correlator.stats(),
      decodeSkipped: this.skips.snapshot(),
      nonIp: this.nonIp,
      ...(this.writer ? { written: { frames: this.writer.written, dropped: this.writer.dropped } } : {}),
      ...(this.dropsQuiet > 0 ? { dropsQuiet: this.dropsQuiet } : {}),
    };
  }

  stop(): Promise<void> {
    return this.stopWith('shutdown');
  }

  private stopWith(reason: string): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      if (this.tickTimer) clearInterval(this.tickTimer);
      if (this.statsTimer) clearInterval(this.statsTimer);
      this.rulesetWatch?.kill('SIGTERM');
      this.linkWatch?.stop();
      await this.kernel?.stop().catch(() => {});
      await this.frames?.stop().catch(() => {});
      await this.ct?.stop().catch(() => {});
      this.docker?.close();
      this.correlator.flush(reason);
      const s = this.correlator.stats();
      if (s.packetsUnmatched > 0 || s.pendingOverflow > 0) {
        this.notice(
          `${s.packetsUnmatched} packets had no conntrack entry (shown as flows without conntrack); ${s.pendingOverflow} dropped from a full hold queue`,
        );
      }
      if (this.dropsQuiet > 0) {
        this.notice(
          `${this.dropsQuiet} kernel drops were not reported (${[...this.quietReasons].map((r) => (r === 'OTHERHOST' ? "OTHERHOST: the host's copies of bridged frames" : `${r} without a flow`)).join('; ')}); --all-drops shows them`,
        );
      }
      this.statsEvent();
      if (this.writer) {
        await this.writer.close().catch((e: unknown) => this.notice(`write: ${(e as Error).message}`));
      }
      this.release();
      this.emit('end');
      this.resolveDone();
    })();
    return this.stopping;
  }

  [Symbol.asyncIterator](): AsyncIterator<JourneyEvent> {
    const queue: JourneyEvent[] = [];
    const max = this.opts.iteratorBuffer ?? 10_000;
    let lost = 0;
    let wake: (() => void) | null = null;
    let ended = false;
    const onEvent = (ev: JourneyEvent): void => {
      if (queue.length >= max) lost++;
      else queue.push(ev);
      wake?.();
    };
    const onEnd = (): void => {
      ended = true;
      wake?.();
    };
    this.on('event', onEvent);
    this.once('end', onEnd);
    const cleanup = (): void => {
      this.off('event', onEvent);
      this.off('end', onEnd);
    };
    return {
      next: async (): Promise<IteratorResult<JourneyEvent>> => {
        for (;;) {
          if (lost > 0) {
            const count = lost;
            lost = 0;
            return { value: { v: SCHEMA_VERSION, seq: this.nextSeq(), time: Date.now(), type: 'lost', count }, done: false };
          }
          const ev = queue.shift();
          if (ev) return { value: ev, done: false };
          if (ended) {
            cleanup();
            return { value: undefined, done: true };
          }
          await new Promise<void>((r) => (wake = r));
          wake = null;
        }
      },
      return: async (): Promise<IteratorResult<JourneyEvent>> => {
        cleanup();
        return { value: undefined, done: true };
      },
    };
  }
}

/**
 * Starts the pipeline (see the header). Listeners attached right after the returned promise
 * resolves get every event, each once: events (the opening notices included) are held until the
 * setImmediate after it returns, then delivered in order; what comes later is delivered as it comes.
 */
export async function startPipeline(opts: PipelineOptions = {}): Promise<Pipeline> {
  const p = new PipelineImpl(opts);
  try {
    await p.init();
    if (p.mode === 'live') await p.run();
  } catch (e) {
    await p.stop().catch(() => {});
    throw e;
  }
  // deliver what was said during the set-up (and since) to listeners that attach now, then run a replay
  setImmediate(() => {
    p.release();
    if (p.mode === 'replay') {
      p.run().catch((e: unknown) => {
        p.notice(`pipeline: ${(e as Error).message}`, (e as JourneyError).code ?? 'E_INTERNAL');
        void p.stop();
      });
    }
  });
  return p;
}

export type { EndpointName };
