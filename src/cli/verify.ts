import type { Command } from 'commander';
import { JourneyError } from '../model/errors.js';
import { verifyHairpin } from '../verify/verify-hairpin.js';
import { formatReport } from '../verify/format.js';
import type { CheckKind } from '../verify/types.js';

const KINDS: readonly CheckKind[] = ['same-bridge', 'self', 'cross-bridge', 'host-loopback', 'host-address'];

function posInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new JourneyError('E_USAGE', `${name} must be a positive number, got "${v}"`);
  return n;
}

interface HairpinCliOptions {
  netns?: string;
  dockerHost?: string;
  docker: boolean;
  timeout: string;
  passive?: boolean;
  duration: string;
  json?: boolean;
  verbose?: boolean;
  hostAddr?: string;
  port?: string[];
  only?: string[];
  trace: string;
  passiveSource: string;
  ebpf: boolean;
}

/** `journey verify hairpin`: exit status 0 only when every check passes (E_VERIFY_FAILED -> 1). */
export function registerVerify(program: Command): void {
  const verify = program.command('verify').description('verify a Docker host behaves as its configuration says it should');
  verify
    .command('hairpin')
    .description(
      'check every published port through the host: a container on the same bridge, the container itself (self-hairpin), a container on another bridge, the host on 127.0.0.1 and on its own address',
    )
    .option('--netns <name>', 'network namespace of the Docker host (name, path or pid)')
    .option('--docker-host <url>', 'Docker Engine API (unix:///path/docker.sock or tcp://host:port; default $DOCKER_HOST)')
    .option('--no-docker', 'do not ask the Docker API: find containers and published ports on the host')
    .option('--timeout <ms>', 'per-probe timeout in milliseconds', '2000')
    .option('--passive', 'send nothing: classify hairpin flows as they happen (see --duration)')
    .option('--duration <s>', 'passive mode: how long to watch, in seconds', '10')
    .option(
      '--passive-source <src>',
      'passive mode: the live pipeline (capture + conntrack + explanations) or conntrack events only: pipeline|conntrack',
      'pipeline',
    )
    .option('--host-addr <ip>', 'the host address to call (default: the first address not on a bridge)')
    .option('--port <port...>', 'only these published ports (8000 or 8000/tcp)')
    .option('--only <kind...>', `only these checks: ${KINDS.join(', ')}`)
    .option('--trace <when>', 'kernel trace (nft monitor trace) of failing probes, all probes, or none: failures|all|none', 'failures')
    .option('--no-ebpf', 'do not load the eBPF drop tracer (drop reasons)')
    .option('--json', 'print the report as JSON (docs/verify.md)')
    .option('-v, --verbose', 'show the evidence of passing checks too')
    .action(async (o: HairpinCliOptions) => {
      if (!['pipeline', 'conntrack'].includes(o.passiveSource))
        throw new JourneyError('E_USAGE', `--passive-source must be pipeline or conntrack, got "${o.passiveSource}"`);
      if (!['failures', 'all', 'none'].includes(o.trace))
        throw new JourneyError('E_USAGE', `--trace must be failures, all or none, got "${o.trace}"`);
      for (const k of o.only ?? [])
        if (!KINDS.includes(k as CheckKind)) throw new JourneyError('E_USAGE', `--only: unknown check "${k}" (${KINDS.join(', ')})`);
      if (process.getuid?.() !== 0)
        throw new JourneyError('E_NOT_ROOT', 'verify hairpin enters network namespaces and reads conntrack: run it as root');
      const ac = new AbortController();
      const onSig = (): void => ac.abort();
      process.once('SIGINT', onSig);
      try {
        const report = await verifyHairpin({
          ...(o.netns !== undefined ? { netns: o.netns } : {}),
          ...(o.dockerHost !== undefined ? { dockerHost: o.dockerHost } : {}),
          noDocker: !o.docker,
          timeoutMs: posInt('--timeout', o.timeout),
          passive: o.passive === true,
          durationMs: posInt('--duration', o.duration) * 1000,
          ...(o.hostAddr !== undefined ? { hostAddr: o.hostAddr } : {}),
          ...(o.port !== undefined ? { ports: o.port } : {}),
          ...(o.only !== undefined ? { kinds: o.only as CheckKind[] } : {}),
          trace: o.trace as 'failures' | 'all' | 'none',
          passiveSource: o.passiveSource as 'pipeline' | 'conntrack',
          drops: o.ebpf,
          log: (m) => process.stderr.write(`journey: ${m}\n`),
          signal: ac.signal,
        });
        process.stdout.write(o.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report, { verbose: o.verbose === true }));
        if (!report.ok) {
          const failed = [
            ...report.checks.filter((c) => c.status === 'fail').map((c) => c.id),
            ...report.flows.filter((f) => f.status === 'fail').map((f) => `${f.kind}:${f.from}->${f.to}`),
          ];
          throw new JourneyError('E_VERIFY_FAILED', `${failed.length} hairpin check(s) failed: ${failed.join(', ')}`, { failed });
        }
      } finally {
        process.removeListener('SIGINT', onSig);
      }
    });
}
