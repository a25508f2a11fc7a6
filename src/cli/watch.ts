/**
 * `journey watch`: every flow of a Docker host, live, one line per flow event (or --json lines,
 * or a --top table, or --explain journeys). Built on startPipeline (src/correlate/pipeline.ts).
 * stdout carries the data; notices and the final capture statistics go to stderr.
 */
import type { Command } from 'commander';
import { JourneyError } from '../model/errors.js';
import type { JourneyEvent } from '../model/events.js';
import { startPipeline, type PipelineOptions } from '../correlate/pipeline.js';
import { formatEvent, formatFlowEvent, formatStats } from '../output/terminal.js';
import { formatJourney } from '../output/terminal-explain.js';
import { eventMatches, type FlowFilter } from '../output/terminal-filter.js';
import { TopScreen } from '../output/terminal-top.js';
import { JsonLinesWriter } from '../output/jsonl.js';

interface WatchCliOptions {
  interface?: string[];
  netns?: string;
  filter?: string;
  backend?: string;
  promisc?: boolean;
  dockerHost?: string;
  docker: boolean;
  dockerSnapshot?: string;
  read?: string[];
  conntrack?: string[];
  conntrackSource?: string;
  ruleset?: string[];
  hostAddrs?: string;
  hostRoutes?: string;
  write?: string;
  json?: boolean;
  top?: boolean;
  explain?: boolean;
  explainFlows: boolean;
  kernel: boolean;
  drops?: boolean;
  ignoreDropReason?: string[];
  allDrops?: boolean;
  color?: boolean;
  updates?: boolean;
  counters?: boolean;
  container?: string[];
  port?: string[];
  proto?: string[];
  verdict?: string[];
  nat?: boolean;
  addr?: string[];
  duration?: string;
  statsInterval?: string;
  maxFlows?: string;
  localTime?: boolean;
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, ...v.split(',').filter((x) => x !== '')];

export function registerWatch(program: Command): void {
  program
    .command('watch')
    .description('Watch every flow live: both sides of its NAT, Docker names, its path through netfilter')
    .argument('[expression...]', 'capture filter in tcpdump syntax (same as --filter)')
    .option('-i, --interface <iface>', 'capture on this interface (repeatable; default: every Docker bridge and the uplink)', collect)
    .option('--netns <name>', "the Docker host's network namespace (e.g. jl-<id>-host)")
    .option('-f, --filter <expr>', 'capture filter in tcpdump syntax (compiled by libpcap)')
    .option('--backend <name>', 'capture backend: native (default: journey\'s libpcap addon; pcap when it is not built), pcap (node-pcap) or cap')
    .option('--promisc', 'promiscuous mode on every captured interface (default: on for bridges only, off for the uplink)')
    .option('--no-promisc', 'promiscuous mode nowhere (a bridge then shows no frames bridged between its ports: hairpin NAT, container to container)')
    .option('--docker-host <url>', 'Docker Engine API (unix:///path or tcp://host:port; default $DOCKER_HOST or /var/run/docker.sock)')
    .option('--no-docker', 'do not ask Docker for names')
    .option('--docker-snapshot <file>', 'replay: Docker names from a recorded snapshot (JSON)')
    .option('-r, --read <file...>', 'replay pcap/pcapng files instead of capturing')
    .option('--conntrack <file...>', 'replay: conntrack snapshot (conntrack -L / -E output, /proc/net/nf_conntrack, JSON lines)')
    .option('--ruleset <file...>', 'replay: the recorded ruleset to explain flows with (iptables-save text or nft -j JSON)')
    .option('--host-addrs <file>', 'replay: `ip -j addr` of the recorded host')
    .option('--host-routes <file>', 'replay: `ip -j route show table all` of the recorded host')
    .option('--conntrack-source <kind>', 'live conntrack source: auto, netlink, tool, proc', 'auto')
    .option('-w, --write <file>', 'also write what was captured to a pcapng file')
    .option('--json', 'JSON lines: the same events as `journey serve` (docs/event-schema.json)')
    .option('--top', 'a table of live flows, refreshed every second')
    .option('--explain', "print each new flow's journey in full")
    .option('--no-explain-flows', 'do not run the simulator on flows')
    .option('--no-kernel', 'no eBPF (drops with the kernel reason, tuples at the netfilter hooks)')
    .option('--drops', 'also print kernel drops that belong to no flow')
    .option('--ignore-drop-reason <reason>', 'kernel drop reason never to report (repeatable or comma-separated, e.g. NO_SOCKET; filtered in the kernel)', collect)
    .option('--all-drops', 'also report NOT_SPECIFIED drops that belong to no flow and OTHERHOST drops (left out by default: router solicitations, packets the kernel frees without a reason, and copies of bridged frames)')
    .option('--color', 'force colour')
    .option('--no-color', 'no colour (default when stdout is not a terminal)')
    .option('--updates', 'also print flow updates (state changes, counters)')
    .option('--counters', 'print packet/byte counters on every line')
    .option('--container <name>', 'only flows of this container (repeatable)', collect)
    .option('--port <port>', 'only flows with this port, before or after NAT (repeatable)', collect)
    .option('--proto <proto>', 'only tcp, udp, icmp, icmpv6 (repeatable)', collect)
    .option('--verdict <verdict>', 'only flows with this verdict: accept, drop, reject, indeterminate', collect)
    .option('--nat', 'only NATed flows')
    .option('--addr <ip>', 'only flows with this address, before or after NAT (repeatable)', collect)
    .option('--duration <seconds>', 'stop after this many seconds')
    .option('--stats-interval <seconds>', 'capture.stats period in --json output', '5')
    .option('--max-flows <n>', 'largest number of live flows kept (oldest evicted, counted)')
    .option('--local-time', 'print local time instead of UTC')
    .action(async (expression: string[], o: WatchCliOptions) => {
      await runWatch(expression, o);
    });
}

/** nft -j JSON or iptables-save text, told apart by the first character. */
async function splitRulesetFiles(files: readonly string[]): Promise<{ iptablesSave: string[]; nftJson: string[] }> {
  const { readFile } = await import('node:fs/promises');
  const out = { iptablesSave: [] as string[], nftJson: [] as string[] };
  for (const f of files) {
    let head: string;
    try {
      head = (await readFile(f, 'utf8')).trimStart().slice(0, 1);
    } catch (e) {
      throw new JourneyError('E_USAGE', `--ruleset ${f}: ${(e as Error).message}`);
    }
    (head === '{' || head === '[' ? out.nftJson : out.iptablesSave).push(f);
  }
  return out;
}

function intOpt(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new JourneyError('E_USAGE', `--${name} wants a number, got "${v}"`);
  return n;
}

async function runWatch(expression: string[], o: WatchCliOptions): Promise<void> {
  const filterExpr = [o.filter, expression.join(' ')].filter((x) => x !== undefined && x.trim() !== '').join(' and ');
  if (o.backend !== undefined && o.backend !== 'native' && o.backend !== 'pcap' && o.backend !== 'cap') throw new JourneyError('E_USAGE', '--backend is native, pcap or cap');
  const ctSource = o.conntrackSource ?? 'auto';
  if (!['auto', 'netlink', 'tool', 'proc'].includes(ctSource)) throw new JourneyError('E_USAGE', '--conntrack-source is auto, netlink, tool or proc');
  if (o.conntrack !== undefined && o.read === undefined) throw new JourneyError('E_USAGE', '--conntrack FILE is for replays (with --read FILE)');
  if ((o.ruleset !== undefined || o.hostAddrs !== undefined || o.hostRoutes !== undefined) && o.read === undefined) {
    throw new JourneyError('E_USAGE', '--ruleset/--host-addrs/--host-routes are for replays (with --read FILE); live, the ruleset is read from the host');
  }
  const rulesetFiles = o.ruleset ? await splitRulesetFiles(o.ruleset) : undefined;
  if ([o.json, o.top, o.explain].filter(Boolean).length > 1) throw new JourneyError('E_USAGE', '--json, --top and --explain are different views: choose one');
  const ports = (o.port ?? []).map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new JourneyError('E_USAGE', `--port: not a port: ${p}`);
    return n;
  });
  const filter: FlowFilter = {
    ...(o.container ? { container: o.container } : {}),
    ...(ports.length ? { port: ports } : {}),
    ...(o.proto ? { proto: o.proto.map((p) => p.toLowerCase()) } : {}),
    ...(o.verdict ? { verdict: o.verdict.map((v) => v.toLowerCase().replace(/ed$/, '').replace(/^accept$/, 'accept')) } : {}),
    ...(o.nat ? { natOnly: true } : {}),
    ...(o.addr ? { addr: o.addr } : {}),
  };
  const statsS = intOpt(o.statsInterval, 'stats-interval') ?? 5;
  const maxFlows = intOpt(o.maxFlows, 'max-flows');
  const opts: PipelineOptions = {
    ...(o.netns !== undefined ? { netns: o.netns } : {}),
    ...(o.interface ? { interfaces: o.interface } : {}),
    ...(filterExpr !== '' ? { filter: filterExpr } : {}),
    ...(o.backend !== undefined ? { backend: o.backend as 'native' | 'pcap' | 'cap' } : {}),
    ...(o.promisc !== undefined ? { promisc: o.promisc } : {}),
    ...(o.docker === false ? { dockerHost: false as const } : o.dockerHost !== undefined ? { dockerHost: o.dockerHost } : {}),
    ...(o.dockerSnapshot !== undefined ? { dockerSnapshot: o.dockerSnapshot } : {}),
    ...(o.read ? { read: o.read } : {}),
    ...(o.conntrack ? { conntrackSnapshot: o.conntrack } : {}),
    conntrack: ctSource as 'auto' | 'netlink' | 'tool' | 'proc',
    ...(o.write !== undefined ? { write: o.write } : {}),
    explain: o.explainFlows,
    kernel: o.kernel,
    ...(o.ignoreDropReason ? { ignoreDropReasons: o.ignoreDropReason.map((r) => r.toUpperCase()) } : {}),
    ...(o.allDrops ? { quietDropReasons: [] } : {}),
    ...(rulesetFiles ? { rulesetFiles: { ...rulesetFiles, ...(o.hostAddrs !== undefined ? { addrs: o.hostAddrs } : {}), ...(o.hostRoutes !== undefined ? { routes: o.hostRoutes } : {}) } } : {}),
    statsIntervalMs: o.json ? statsS * 1000 : 0,
    ...(maxFlows !== undefined ? { maxFlows } : {}),
  };

  const p = await startPipeline(opts);
  const color = o.color ?? (process.stdout.isTTY === true && !process.env['NO_COLOR']);
  const tz = o.localTime ? ('local' as const) : ('utc' as const);
  const json = o.json ? new JsonLinesWriter(process.stdout) : null;
  const top = o.top ? new TopScreen(process.stdout, () => p.flows()) : null;
  let lastStats: Extract<JourneyEvent, { type: 'capture.stats' }> | null = null;

  p.on('event', (ev: JourneyEvent) => {
    if (ev.type === 'capture.stats') lastStats = ev;
    if (json) {
      if (eventMatches(ev, filter)) json.write(ev);
      return;
    }
    if (ev.type === 'notice' || ev.type === 'lost' || ev.type === 'ruleset.changed') {
      process.stderr.write(`${formatEvent(ev, { color: process.stderr.isTTY === true && color, tz })}\n`);
      return;
    }
    if (ev.type === 'drop') {
      if (o.drops && ev.flowId === null && !top) process.stdout.write(`${formatEvent(ev, { color, tz })}\n`);
      return;
    }
    if (top || ev.type === 'capture.stats') return;
    if (!eventMatches(ev, filter)) return;
    if (ev.type === 'flow.update' && !o.updates) return;
    if (o.explain) {
      if (ev.type === 'flow.start') process.stdout.write(`${formatJourney(ev.flow, { color })}\n\n`);
      return;
    }
    process.stdout.write(`${formatFlowEvent(ev, { color, tz, counters: o.counters === true })}\n`);
  });
  top?.start();

  let signalled = false;
  const onSignal = (): void => {
    if (signalled) {
      process.exit(130); // a second Ctrl-C: leave now
    }
    signalled = true;
    void p.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') void p.stop();
  });
  const durationS = intOpt(o.duration, 'duration');
  const timer = durationS !== undefined ? setTimeout(() => void p.stop(), durationS * 1000) : null;

  await p.done;
  if (timer) clearTimeout(timer);
  top?.stop(); // the last table stays on screen
  await json?.flush();
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  const s = p.stats();
  const st = lastStats as Extract<JourneyEvent, { type: 'capture.stats' }> | null;
  const stats = formatStats(st?.stats ?? s.capture, st?.flows ?? { live: s.flows.flowsLive, evicted: s.flows.flowsEvicted });
  process.stderr.write(
    `${stats}\n  flows: ${s.flows.flowsStarted} seen, ${s.flows.flowsEvicted} evicted, ${s.flows.flowsIdled} idled out; packets: ${s.flows.packetsMatched} joined to flows, ${s.flows.packetsUnmatched} without conntrack entry, ${s.flows.pendingOverflow} dropped from the hold queue${s.written ? `; written ${s.written.frames} frames (${s.written.dropped} dropped)` : ''}\n`,
  );
  if (p.error) throw p.error; // a replay that could not be read to the end
}
