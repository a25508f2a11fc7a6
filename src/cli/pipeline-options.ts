/**
 * The capture/pipeline options `journey watch` and `journey serve` share: declared once
 * (addPipelineOptions) and turned into startPipeline options once (pipelineOptionsFrom).
 * Each command adds its own options (views, server, --write, --no-kernel, --stats-interval,
 * --max-flows, …) and the PipelineOptions fields that go with them.
 */
import { assertLivePrivilege } from '../host/privilege.js';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { JourneyError } from '../model/errors.js';
import type { PipelineOptions } from '../pipeline/pipeline.js';
import { CAPTURE_BACKEND_REGISTRY, DEFAULT_CAPTURE_BACKEND, captureBackend } from '../capture/backends/registry.js';
import { DEFAULT_BUFFER_MIB, DEFAULT_BUFFER_TIMEOUT_MS } from '../capture/capture-options.js';

/** What commander gives for the options addPipelineOptions declares. */
export interface PipelineCliOptions {
  interface?: string[];
  netns?: string;
  filter?: string;
  backend?: string;
  promisc?: boolean;
  bufferSize?: string;
  bufferTimeout?: string;
  dockerHost?: string;
  docker: boolean;
  dockerSnapshot?: string;
  read?: string[];
  conntrack?: string[];
  conntrackSource?: string;
  ruleset?: string[];
  hostAddrs?: string;
  hostRoutes?: string;
  explainFlows: boolean;
  verify?: string | boolean;
  ruleCounters?: boolean;
  ignoreDropReason?: string[];
  allDrops?: boolean;
}

/** An integer option within [min, max] (E_USAGE otherwise). */
function boundedInt(v: string, name: string, min: number, max: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n < min || n > max) throw new JourneyError('E_USAGE', `${name} is a whole number from ${min} to ${max}`);
  return n;
}

/** Repeatable, comma-separated list option. */
export const collect = (v: string, prev: string[] = []): string[] => [...prev, ...v.split(',').filter((x) => x !== '')];

/** Capture, Docker, replay and conntrack options (the first group). */
export function addCaptureOptions(cmd: Command, opts: { readonly readNote?: string } = {}): Command {
  return cmd
    .option('-i, --interface <iface>', 'capture on this interface (repeatable; default: every Docker bridge and the uplink)', collect)
    .option('--netns <name>', "the Docker host's network namespace (e.g. jl-<id>-host)")
    .option('-f, --filter <expr>', 'capture filter in tcpdump syntax (compiled by libpcap)')
    .option(
      '--backend <name>',
      `capture backend: ${CAPTURE_BACKEND_REGISTRY.map((b) => `${b.name} (${b.description})`).join('; ')}; default ${DEFAULT_CAPTURE_BACKEND}, its fallback announced`,
    )
    .option('-B, --buffer-size <MiB>', `kernel capture ring per interface, MiB (default ${DEFAULT_BUFFER_MIB})`)
    .option(
      '--buffer-timeout <ms>',
      `the longest a light trickle waits in the ring before it is handed over (default ${DEFAULT_BUFFER_TIMEOUT_MS}; older kernels round it up to a jiffy)`,
    )
    .option('--promisc', 'promiscuous mode on every captured interface (default: on for bridges only, off for the uplink)')
    .option('--no-promisc', 'promiscuous mode nowhere (a bridge then shows no frames bridged between its ports: hairpin NAT, container to container)')
    .option('--docker-host <url>', 'Docker Engine API (unix:///path or tcp://host:port; default $DOCKER_HOST or /var/run/docker.sock)')
    .option('--no-docker', 'do not ask Docker for names')
    .option('--docker-snapshot <file>', 'replay: Docker names from a recorded snapshot (JSON)')
    .option('-r, --read <file...>', `replay pcap/pcapng files instead of capturing${opts.readNote !== undefined ? ` ${opts.readNote}` : ''}`)
    .option('--conntrack <file...>', 'replay: conntrack snapshot (conntrack -L / -E output, /proc/net/nf_conntrack, JSON lines)')
    .option('--ruleset <file...>', 'replay: the recorded ruleset to explain flows with (iptables-save text or nft -j JSON)')
    .option('--host-addrs <file>', 'replay: `ip -j addr` of the recorded host')
    .option('--host-routes <file>', 'replay: `ip -j route show table all` of the recorded host')
    .option('--conntrack-source <kind>', 'live conntrack source: auto, netlink, tool, proc', 'auto');
}

/** What `--verify` without a number traces: new flows a second. */
export const DEFAULT_VERIFY_RATE = 5;

/** --no-explain-flows (the simulator on flows) and --verify [N] (the kernel's word on them). */
export function addExplainFlowsOption(cmd: Command): Command {
  return cmd
    .option('--no-explain-flows', 'do not run the simulator on flows')
    .option(
      '--verify [N]',
      `check each explanation against the kernel's own trace of the flow's first packet (nft monitor trace), for up to N new flows a second (default ${DEFAULT_VERIFY_RATE}): verified, contradicted (the kernel's path wins) or unverified (why); live only, off by default`,
    )
    .option(
      '--rule-counters',
      "at each flow's end, how much the kernel's counter of every rule in its path grew during the flow's life (iptables-save -c / nft counters read once a second; live only)",
    );
}

/** The --verify value: undefined (off), or new flows a second. */
export function verifyRate(v: string | boolean | undefined): number | undefined {
  if (v === undefined || v === false) return undefined;
  if (v === true) return DEFAULT_VERIFY_RATE;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 10_000)
    throw new JourneyError('E_USAGE', `--verify N: N is a whole number of new flows a second, 1 to 10000 (got "${v}")`);
  return n;
}

/** Kernel drop reason options. */
export function addDropReasonOptions(cmd: Command): Command {
  return cmd
    .option(
      '--ignore-drop-reason <reason>',
      'kernel drop reason never to report (repeatable or comma-separated, e.g. NO_SOCKET; filtered in the kernel)',
      collect,
    )
    .option(
      '--all-drops',
      'also report NOT_SPECIFIED drops that belong to no flow and OTHERHOST drops (left out by default: router solicitations, packets the kernel frees without a reason, and copies of bridged frames)',
    );
}

/** Every shared option, in one go (for a command with nothing to put in between). */
export function addPipelineOptions(cmd: Command, opts: { readonly readNote?: string } = {}): Command {
  return addDropReasonOptions(addExplainFlowsOption(addCaptureOptions(cmd, opts)));
}

/** nft -j JSON or iptables-save text, told apart by the first character. */
export function splitRulesetFiles(
  files: readonly string[],
  detail: (e: NodeJS.ErrnoException) => string = (e) => e.message,
): { iptablesSave: string[]; nftJson: string[] } {
  const out = { iptablesSave: [] as string[], nftJson: [] as string[] };
  for (const f of files) {
    let head: string;
    try {
      head = readFileSync(f, 'utf8').trimStart().slice(0, 1);
    } catch (e) {
      throw new JourneyError('E_USAGE', `--ruleset ${f}: ${detail(e as NodeJS.ErrnoException)}`);
    }
    (head === '{' || head === '[' ? out.nftJson : out.iptablesSave).push(f);
  }
  return out;
}

/**
 * Checks the shared options (E_USAGE) and turns them into startPipeline options; the command adds
 * its own fields (statsIntervalMs, maxFlows, write, kernel, …).
 */
export function pipelineOptionsFrom(
  expression: readonly string[],
  o: PipelineCliOptions,
  opts: { readonly rulesetErrorDetail?: (e: NodeJS.ErrnoException) => string } = {},
): PipelineOptions {
  const filterExpr = [o.filter, expression.join(' ')].filter((x) => x !== undefined && x.trim() !== '').join(' and ');
  const backend = o.backend === undefined ? undefined : captureBackend(o.backend).name;
  const ctSource = o.conntrackSource ?? 'auto';
  if (!['auto', 'netlink', 'tool', 'proc'].includes(ctSource)) throw new JourneyError('E_USAGE', '--conntrack-source is auto, netlink, tool or proc');
  if (o.conntrack !== undefined && o.read === undefined) throw new JourneyError('E_USAGE', '--conntrack FILE is for replays (with --read FILE)');
  if ((o.ruleset !== undefined || o.hostAddrs !== undefined || o.hostRoutes !== undefined) && o.read === undefined) {
    throw new JourneyError(
      'E_USAGE',
      '--ruleset/--host-addrs/--host-routes are for replays (with --read FILE); live, the ruleset is read from the host',
    );
  }
  // live: missing privilege is named before any symptom (namespace "not found", conntrack EACCES)
  if (o.read === undefined) assertLivePrivilege('a live capture', o.netns !== undefined ? { netns: o.netns } : {});
  const rulesetFiles = o.ruleset ? splitRulesetFiles(o.ruleset, opts.rulesetErrorDetail) : undefined;
  const verify = verifyRate(o.verify);
  if (verify !== undefined && o.read !== undefined)
    throw new JourneyError('E_USAGE', "--verify is live only: a replay's packets are gone, the kernel cannot trace them");
  if (o.ruleCounters === true && o.read !== undefined)
    throw new JourneyError('E_USAGE', "--rule-counters is live only: a capture file does not hold the kernel's rule counters");
  if (o.ruleCounters === true && o.explainFlows === false)
    throw new JourneyError(
      'E_USAGE',
      "--rule-counters counts the rules of each flow's explained path: it needs explanations (no --no-explain-flows)",
    );
  if (verify !== undefined && o.explainFlows === false)
    throw new JourneyError('E_USAGE', '--verify checks explanations: it needs them (no --no-explain-flows)');
  return {
    ...(o.netns !== undefined ? { netns: o.netns } : {}),
    ...(o.interface ? { interfaces: o.interface } : {}),
    ...(filterExpr !== '' ? { filter: filterExpr } : {}),
    ...(backend !== undefined ? { backend } : {}),
    ...(o.promisc !== undefined ? { promisc: o.promisc } : {}),
    ...(o.bufferSize !== undefined ? { bufferSizeMiB: boundedInt(o.bufferSize, '--buffer-size', 1, 2047) } : {}),
    ...(o.bufferTimeout !== undefined ? { bufferTimeoutMs: boundedInt(o.bufferTimeout, '--buffer-timeout', 1, 1000) } : {}),
    ...(o.docker === false ? { dockerHost: false as const } : o.dockerHost !== undefined ? { dockerHost: o.dockerHost } : {}),
    ...(o.dockerSnapshot !== undefined ? { dockerSnapshot: o.dockerSnapshot } : {}),
    ...(o.read ? { read: o.read } : {}),
    ...(o.conntrack ? { conntrackSnapshot: o.conntrack } : {}),
    ...(rulesetFiles
      ? {
          rulesetFiles: {
            ...rulesetFiles,
            ...(o.hostAddrs !== undefined ? { addrs: o.hostAddrs } : {}),
            ...(o.hostRoutes !== undefined ? { routes: o.hostRoutes } : {}),
          },
        }
      : {}),
    conntrack: ctSource as 'auto' | 'netlink' | 'tool' | 'proc',
    explain: o.explainFlows,
    ...(verify !== undefined ? { verify } : {}),
    ...(o.ruleCounters === true ? { ruleCounters: true } : {}),
    ...(o.ignoreDropReason ? { ignoreDropReasons: o.ignoreDropReason.map((r) => r.toUpperCase()) } : {}),
    ...(o.allDrops ? { quietDropReasons: [] } : {}),
  };
}
