/**
 * `journey watch`: every flow of a Docker host, live, one line per flow event (or --json lines,
 * or a --top table, or --explain journeys). Built on startPipeline (src/pipeline/pipeline.ts).
 * stdout carries the data; notices and the final capture statistics go to stderr.
 */
import type { Command } from 'commander';
import { JourneyError } from '../model/errors.js';
import type { JourneyEvent } from '../model/events.js';
import { HOOK_PLANS, isHookPlanName, type HookPlanName } from '../native/hook-points.js';
import { startPipeline, type PipelineOptions } from '../pipeline/pipeline.js';
import {
  addCaptureOptions,
  addDropReasonOptions,
  addExplainFlowsOption,
  collect,
  pipelineOptionsFrom,
  type PipelineCliOptions,
} from './pipeline-options.js';
import { formatStats } from '../output/terminal.js';
import { eventMatches, filterFromWords } from '../output/flow-filter.js';
import { createPrinter, isOutputFormat, OUTPUT_FORMATS, PRINTERS, type OutputFormat } from '../output/printers/registry.js';
import { addDropOptions, type DropCliOptions, dropPrivilegesIfRoot } from './privilege-drop.js';
import { addExportOptions, openCliExports, type ExportCliOptions } from './export-options.js';

interface WatchCliOptions extends PipelineCliOptions, ExportCliOptions, DropCliOptions {
  write?: string;
  output?: string;
  json?: boolean;
  top?: boolean;
  explain?: boolean;
  kernel: boolean;
  hookPoints?: string;
  drops?: boolean;
  color?: boolean;
  updates?: boolean;
  counters?: boolean;
  allChains?: boolean;
  container?: string[];
  network?: string[];
  port?: string[];
  proto?: string[];
  verdict?: string[];
  nat?: boolean;
  addr?: string[];
  duration?: string;
  statsInterval?: string;
  startDelay?: string;
  maxFlows?: string;
  localTime?: boolean;
}

export function registerWatch(program: Command): void {
  const cmd = program
    .command('watch')
    .description('Watch every flow live: both sides of its NAT, Docker names, its path through netfilter')
    .argument('[expression...]', 'capture filter in tcpdump syntax (same as --filter)');
  addCaptureOptions(cmd)
    .option('-w, --write <file>', 'also write what was captured to a pcapng file')
    .option('-o, --output <format>', `output format: ${OUTPUT_FORMATS.map((f) => `${f} (${PRINTERS[f].description})`).join('; ')}`)
    .option('--json', 'the same as -o json (the events of `journey serve`, docs/event-schema.json)')
    .option('--top', 'the same as -o top')
    .option('--explain', 'the same as -o explain')
    .option(
      '--start-delay <ms>',
      'wait this long before a flow starts so both NAT legs are on its first line (default: 250 for the terminal views, 0 for -o json)',
    )
    .option('--all-chains', 'with -o explain: also list chains entered and left without a matching rule (collapsed by default)');
  addExplainFlowsOption(cmd)
    .option('--no-kernel', 'no eBPF (drops with the kernel reason, tuples at the netfilter hooks)')
    .option(
      '--hook-points <plan>',
      `netfilter points the eBPF programs see packets at: ${HOOK_PLANS.join(' or ')} (after-nat, the default: after each NAT, the tuple before DNAT from conntrack, two links a forwarded packet; nat: both sides of each NAT and after the forward filter, five)`,
    )
    .option('--drops', 'also print kernel drops that belong to no flow');
  addDropReasonOptions(cmd)
    .option('--color', 'force colour')
    .option('--no-color', 'no colour (default when stdout is not a terminal)')
    .option('--updates', 'also print flow updates (state changes, counters)')
    .option('--counters', 'print packet/byte counters on every line')
    .option('--container <name>', 'only flows of this container (repeatable)', collect)
    .option('--network <name>', 'only flows of this Docker network (repeatable)', collect)
    .option('--port <port>', 'only flows with this port, before or after NAT (repeatable)', collect)
    .option('--proto <proto>', 'only tcp, udp, icmp, icmpv6 (repeatable)', collect)
    .option(
      '--verdict <verdict>',
      'only flows with this verdict: accept, drop, reject, indeterminate (or ACCEPTED, DROPPED, REJECTED as printed)',
      collect,
    )
    .option('--nat', 'only NATed flows')
    .option('--addr <ip>', 'only flows with this address, before or after NAT (repeatable)', collect)
    .option('--duration <seconds>', 'stop after this many seconds')
    .option('--stats-interval <seconds>', 'capture.stats period in --json output', '5')
    .option('--max-flows <n>', 'largest number of live flows kept (oldest evicted, counted)')
    .option('--local-time', 'print local time instead of UTC');
  addDropOptions(addExportOptions(cmd)).action(async (expression: string[], o: WatchCliOptions) => {
    await runWatch(expression, o);
  });
}

function intOpt(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new JourneyError('E_USAGE', `--${name} wants a number, got "${v}"`);
  return n;
}

function hookPlanOpt(v: string): HookPlanName {
  if (!isHookPlanName(v)) throw new JourneyError('E_USAGE', `--hook-points: unknown plan "${v}" (${HOOK_PLANS.join(', ')})`);
  return v;
}

/** -o FORMAT, or one of its shorthands (--json, --top, --explain); line by default. */
function outputFormat(o: WatchCliOptions): OutputFormat {
  const asked = [o.output, o.json ? 'json' : undefined, o.top ? 'top' : undefined, o.explain ? 'explain' : undefined].filter(
    (x): x is string => x !== undefined,
  );
  if (new Set(asked).size > 1) throw new JourneyError('E_USAGE', `${asked.join(', ')}: different output formats, choose one`);
  const f = asked[0] ?? 'line';
  if (!isOutputFormat(f)) throw new JourneyError('E_USAGE', `-o: unknown output format "${f}" (formats: ${OUTPUT_FORMATS.join(', ')})`);
  return f;
}

async function runWatch(expression: string[], o: WatchCliOptions): Promise<void> {
  const shared = pipelineOptionsFrom(expression, o);
  const format = outputFormat(o);
  const dropped = await dropPrivilegesIfRoot(o);
  if (dropped !== null) {
    process.exitCode = dropped;
    return;
  }
  const filter = filterFromWords({
    container: o.container,
    network: o.network,
    port: o.port,
    protocol: o.proto,
    verdict: o.verdict,
    natOnly: o.nat ? ['true'] : undefined,
    addr: o.addr,
  });
  const statsS = intOpt(o.statsInterval, 'stats-interval') ?? 5;
  const maxFlows = intOpt(o.maxFlows, 'max-flows');
  const opts: PipelineOptions = {
    ...shared,
    ...(o.write !== undefined ? { write: o.write } : {}),
    kernel: o.kernel,
    ...(o.hookPoints !== undefined ? { hookPoints: hookPlanOpt(o.hookPoints) } : {}),
    statsIntervalMs: format === 'json' ? statsS * 1000 : 0,
    // the terminal views keep a short display delay so that a flow's first line shows both legs
    startDelayMs: intOpt(o.startDelay, 'start-delay') ?? (format === 'json' ? 0 : 250),
    ...(maxFlows !== undefined ? { maxFlows } : {}),
  };

  const exports = await openCliExports(o, (line) => process.stderr.write(`journey watch: ${line}\n`));
  let p: Awaited<ReturnType<typeof startPipeline>>;
  try {
    p = await startPipeline(opts);
  } catch (e) {
    await exports?.close();
    throw e;
  }
  const color = o.color ?? (process.stdout.isTTY === true && !process.env['NO_COLOR']);
  const tz = o.localTime ? ('local' as const) : ('utc' as const);
  const printer = createPrinter(format, {
    out: process.stdout,
    err: process.stderr,
    color,
    errColor: process.stderr.isTTY === true && color,
    tz,
    counters: o.counters === true,
    allChains: o.allChains === true,
    updates: o.updates === true,
    drops: o.drops === true,
    flows: () => p.flows(),
  });
  let lastStats: Extract<JourneyEvent, { type: 'capture.stats' }> | null = null;

  p.on('event', (ev: JourneyEvent) => {
    if (ev.type === 'capture.stats') lastStats = ev;
    if (!eventMatches(filter, ev)) return;
    printer.event(ev);
    exports?.write(ev); // the export carries what watch shows
  });
  printer.start?.();

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
  await printer.stop();
  const exported = (await exports?.close()) ?? [];
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  const s = p.stats();
  const st = lastStats as Extract<JourneyEvent, { type: 'capture.stats' }> | null;
  const stats = formatStats(st?.stats ?? s.capture, st?.flows ?? { live: s.flows.flowsLive, evicted: s.flows.flowsEvicted });
  process.stderr.write(
    `${stats}\n  flows: ${s.flows.flowsStarted} seen, ${s.flows.flowsEvicted} evicted, ${s.flows.flowsIdled} idled out; packets: ${s.flows.packetsMatched} joined to flows, ${s.flows.packetsUnmatched} without conntrack entry, ${s.flows.pendingOverflow} dropped from the hold queue${s.written ? `; written ${s.written.frames} frames (${s.written.dropped} dropped)` : ''}\n`,
  );
  for (const line of exported) process.stderr.write(`  ${line}\n`);
  if (p.error) throw p.error; // a replay that could not be read to the end
}
