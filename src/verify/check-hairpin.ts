/**
 * `journey verify hairpin` as a registered check (./checks.ts): can containers and the host reach
 * each published port through the host? The work is ./verify-hairpin.ts (loaded when the check runs).
 */
import { JourneyError } from '../model/errors.js';
import type { CheckContext, VerifyCheck } from './check.js';
import { formatReport } from './format.js';
import { HAIRPIN_PATH_KINDS, type CheckKind, type HairpinReport } from './types.js';
import type { VerifyOptions } from './verify-hairpin.js';

function posInt(name: string, v: unknown): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new JourneyError('E_USAGE', `${name} must be a positive number, got "${String(v)}"`);
  return n;
}

function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(v as T)) throw new JourneyError('E_USAGE', `${name} must be ${allowed.join(', ')}, got "${String(v)}"`);
  return v as T;
}

function hostOf(ctx: CheckContext): Pick<VerifyOptions, 'netns' | 'dockerHost' | 'noDocker' | 'signal' | 'log'> {
  return {
    ...(ctx.netns !== undefined ? { netns: ctx.netns } : {}),
    ...(ctx.noDocker === true ? { noDocker: true } : ctx.dockerHost !== undefined ? { dockerHost: ctx.dockerHost } : {}),
    ...(ctx.signal !== undefined ? { signal: ctx.signal } : {}),
    ...(ctx.log !== undefined ? { log: ctx.log } : {}),
  };
}

export const hairpinCheck: VerifyCheck<'hairpin', VerifyOptions, HairpinReport> = {
  name: 'hairpin',
  description:
    'check every published port through the host: a container on the same bridge, the container itself (self-hairpin), a container on another bridge, the host on 127.0.0.1 and on its own address',
  cliOptions: [
    { flags: '--timeout <ms>', description: 'per-probe timeout in milliseconds', default: '2000' },
    { flags: '--passive', description: 'send nothing: classify hairpin flows as they happen (see --duration)' },
    { flags: '--duration <s>', description: 'passive mode: how long to watch, in seconds', default: '10' },
    {
      flags: '--passive-source <src>',
      description: 'passive mode: the live pipeline (capture + conntrack + explanations) or conntrack events only: pipeline|conntrack',
      default: 'pipeline',
    },
    { flags: '--host-addr <ip>', description: 'the host address to call (default: the first address not on a bridge)' },
    { flags: '--port <port...>', description: 'only these published ports (8000 or 8000/tcp)' },
    { flags: '--only <kind...>', description: `only these checks: ${HAIRPIN_PATH_KINDS.join(', ')}` },
    {
      flags: '--trace <when>',
      description: 'kernel trace (nft monitor trace) of failing probes, all probes, or none: failures|all|none',
      default: 'failures',
    },
    { flags: '--no-ebpf', description: 'do not load the eBPF drop tracer (drop reasons)' },
  ],
  needsRoot: () => true,
  fromCli(o, ctx) {
    const only = (o['only'] as string[] | undefined) ?? undefined;
    for (const k of only ?? [])
      if (!HAIRPIN_PATH_KINDS.includes(k as CheckKind))
        throw new JourneyError('E_USAGE', `--only: unknown check "${k}" (${HAIRPIN_PATH_KINDS.join(', ')})`);
    return {
      ...hostOf(ctx),
      timeoutMs: posInt('--timeout', o['timeout']),
      passive: o['passive'] === true,
      durationMs: posInt('--duration', o['duration']) * 1000,
      ...(o['hostAddr'] !== undefined ? { hostAddr: String(o['hostAddr']) } : {}),
      ...(o['port'] !== undefined ? { ports: o['port'] as string[] } : {}),
      ...(only !== undefined ? { kinds: only as CheckKind[] } : {}),
      trace: oneOf('--trace', o['trace'], ['failures', 'all', 'none'] as const),
      passiveSource: oneOf('--passive-source', o['passiveSource'], ['pipeline', 'conntrack'] as const),
      drops: o['ebpf'] !== false,
    };
  },
  wireSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      ports: { type: 'array', maxItems: 32, uniqueItems: true, items: { type: 'string', pattern: '^[0-9]{1,5}(/(tcp|udp|sctp))?$' } },
      kinds: { type: 'array', maxItems: 5, uniqueItems: true, items: { enum: [...HAIRPIN_PATH_KINDS] } },
      hostAddr: { type: 'string', minLength: 2, maxLength: 45, pattern: '^[0-9A-Fa-f:.]+$' },
      timeoutMs: { type: 'integer', minimum: 100, maximum: 10000 },
      trace: { enum: ['failures', 'all', 'none'] },
      passive: { type: 'boolean' },
      durationMs: { type: 'integer', minimum: 1000, maximum: 60000 },
      drops: { type: 'boolean' },
    },
  },
  fromWire(r, ctx) {
    return {
      ...hostOf(ctx),
      ...(r['ports'] !== undefined ? { ports: r['ports'] as string[] } : {}),
      ...(r['kinds'] !== undefined ? { kinds: r['kinds'] as CheckKind[] } : {}),
      ...(r['hostAddr'] !== undefined ? { hostAddr: r['hostAddr'] as string } : {}),
      ...(r['timeoutMs'] !== undefined ? { timeoutMs: r['timeoutMs'] as number } : {}),
      ...(r['trace'] !== undefined ? { trace: r['trace'] as 'failures' | 'all' | 'none' } : {}),
      ...(r['passive'] !== undefined ? { passive: r['passive'] as boolean } : {}),
      ...(r['durationMs'] !== undefined ? { durationMs: r['durationMs'] as number } : {}),
      ...(r['drops'] !== undefined ? { drops: r['drops'] as boolean } : {}),
    };
  },
  async plan(opts) {
    return (await import('./verify-hairpin.js')).planHairpin(opts);
  },
  async run(opts) {
    return (await import('./verify-hairpin.js')).verifyHairpin(opts);
  },
  report: (r, o) => formatReport(r, o),
  failures: (r) => [
    ...r.checks.filter((c) => c.status === 'fail').map((c) => c.id),
    ...r.flows.filter((f) => f.status === 'fail').map((f) => `${f.kind}:${f.from}->${f.to}`),
  ],
};
