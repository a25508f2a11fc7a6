/**
 * `journey verify exposure` as a registered check (./checks.ts): who can reach each published port
 * and container address, and why. The work is ./verify-exposure.ts (loaded when the check runs).
 */
import { readFileSync } from 'node:fs';
import { JourneyError } from '../model/errors.js';
import type { CheckContext, VerifyCheck } from './check.js';
import { formatExposure } from './exposure-format.js';
import { policyFrom } from './exposure-policy.js';
import { IP_FAMILIES, SOURCE_CLASSES, type ExposureReport, type IpFamilyNumber, type SourceClass } from './exposure-types.js';
import type { ExposureOptions } from './verify-exposure.js';

function host(ctx: CheckContext): Pick<ExposureOptions, 'netns' | 'dockerHost' | 'noDocker' | 'signal' | 'log'> {
  return {
    ...(ctx.netns !== undefined ? { netns: ctx.netns } : {}),
    ...(ctx.noDocker === true ? { noDocker: true } : ctx.dockerHost !== undefined ? { dockerHost: ctx.dockerHost } : {}),
    ...(ctx.signal !== undefined ? { signal: ctx.signal } : {}),
    ...(ctx.log !== undefined ? { log: ctx.log } : {}),
  };
}

function list<T extends string | number>(flag: string, given: unknown, allowed: readonly T[], conv: (s: string) => T): T[] | undefined {
  if (given === undefined) return undefined;
  const out = (given as string[]).flatMap((s) => s.split(',')).map((s) => conv(s.trim()));
  for (const v of out) if (!allowed.includes(v)) throw new JourneyError('E_USAGE', `${flag}: "${v}" is not one of ${allowed.join(', ')}`);
  return out;
}

/** iptables-save text or `nft -j` JSON, told apart by the first character. */
function sniffRulesets(files: readonly string[]): { iptablesSave: string[]; nftJson: string[] } {
  const out = { iptablesSave: [] as string[], nftJson: [] as string[] };
  for (const f of files) {
    let head: string;
    try {
      head = readFileSync(f, 'utf8').trimStart().slice(0, 1);
    } catch (e) {
      throw new JourneyError('E_USAGE', `--ruleset ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: f });
    }
    (head === '{' || head === '[' ? out.nftJson : out.iptablesSave).push(f);
  }
  return out;
}

function offline(o: Readonly<Record<string, unknown>>): boolean {
  return o['ruleset'] !== undefined || o['nft'] !== undefined;
}

export const exposureCheck: VerifyCheck<'exposure', ExposureOptions, ExposureReport> = {
  name: 'exposure',
  description:
    'who can reach each published port and container address (the internet, a LAN neighbour, the host, a container on the same or another bridge; IPv4 and IPv6), and why: the deciding rule, the NAT, the firewall never consulted, what would change it',
  cliOptions: [
    { flags: '--ruleset <file...>', description: 'offline: the ruleset (iptables-save / ip6tables-save text or nft -j JSON)' },
    { flags: '--nft <file...>', description: 'offline: nft text rulesets (parsed by nft in a scratch namespace: root)' },
    { flags: '--addrs <file>', description: 'offline: `ip -j addr` of the host' },
    { flags: '--routes <file>', description: 'offline: `ip -j route show table all` (and `ip -6 ...`) of the host' },
    { flags: '--docker-snapshot <file>', description: 'offline: a Docker snapshot (JSON: containers, networks, published ports)' },
    { flags: '--source <class...>', description: `only these source classes: ${SOURCE_CLASSES.join(', ')}` },
    { flags: '--family <n...>', description: 'only these IP families: 4, 6' },
    {
      flags: '--policy <file>',
      description: 'YAML or JSON: which ports may be reached from which source class; a reachable row it does not allow fails',
    },
    {
      flags: '--active',
      description: 'confirm rows with real probes from namespaces that are that source (live only), compared with the kernel trace',
    },
    { flags: '--source-netns <class=netns...>', description: '--active: a namespace that is a source class (lan=jl-x-ext)' },
    { flags: '--loopback-netns <netns>', description: '--active: a LAN neighbour that routes 127.0.0.0/8 to the host (plays lan rows to 127.0.0.1)' },
    { flags: '--timeout <ms>', description: '--active: per-probe timeout in milliseconds', default: '2000' },
  ],
  needsRoot: (o) => !offline(o) || o['nft'] !== undefined,
  fromCli(o, ctx) {
    const sources = list('--source', o['source'], SOURCE_CLASSES, (s) => s as SourceClass);
    const families = list('--family', o['family'], IP_FAMILIES, (s) => Number(s) as IpFamilyNumber);
    const timeout = Number(o['timeout']);
    if (!Number.isFinite(timeout) || timeout <= 0)
      throw new JourneyError('E_USAGE', `--timeout must be a positive number, got "${String(o['timeout'])}"`);
    const sourceNetns: Partial<Record<SourceClass, string>> = {};
    for (const s of (o['sourceNetns'] as string[] | undefined) ?? []) {
      const m = /^([a-z-]+)=(.+)$/.exec(s);
      if (m === null || !SOURCE_CLASSES.includes(m[1] as SourceClass))
        throw new JourneyError('E_USAGE', `--source-netns wants CLASS=NETNS (${SOURCE_CLASSES.join(', ')}), got "${s}"`);
      sourceNetns[m[1] as SourceClass] = m[2] ?? '';
    }
    if (offline(o) && o['active'] === true) throw new JourneyError('E_USAGE', '--active probes a live host: it cannot go with --ruleset/--nft');
    const files = offline(o)
      ? {
          offline: {
            ruleset: { ...sniffRulesets((o['ruleset'] as string[] | undefined) ?? []), nft: (o['nft'] as string[] | undefined) ?? [] },
            ...(o['addrs'] !== undefined ? { addrs: String(o['addrs']) } : {}),
            ...(o['routes'] !== undefined ? { routes: String(o['routes']) } : {}),
            ...(o['dockerSnapshot'] !== undefined ? { dockerSnapshot: String(o['dockerSnapshot']) } : {}),
          },
        }
      : {};
    return {
      ...host(ctx),
      ...files,
      ...(sources !== undefined ? { sources } : {}),
      ...(families !== undefined ? { families } : {}),
      ...(o['policy'] !== undefined ? { policy: String(o['policy']) } : {}),
      active: o['active'] === true,
      sourceNetns,
      ...(o['loopbackNetns'] !== undefined ? { loopbackNetns: String(o['loopbackNetns']) } : {}),
      timeoutMs: timeout,
    };
  },
  wireSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      sources: { type: 'array', maxItems: 5, uniqueItems: true, items: { enum: [...SOURCE_CLASSES] } },
      families: { type: 'array', maxItems: 2, uniqueItems: true, items: { enum: [...IP_FAMILIES] } },
      active: { type: 'boolean' },
      timeoutMs: { type: 'integer', minimum: 100, maximum: 10000 },
      policy: {
        type: 'object',
        additionalProperties: false,
        properties: {
          allow: { type: 'array', maxItems: 256, items: { type: 'object', maxProperties: 6 } },
          indeterminate: { enum: ['warn', 'fail'] },
        },
      },
    },
  },
  fromWire(w, ctx) {
    return {
      ...host(ctx),
      ...(w['sources'] !== undefined ? { sources: w['sources'] as SourceClass[] } : {}),
      ...(w['families'] !== undefined ? { families: w['families'] as IpFamilyNumber[] } : {}),
      ...(w['active'] !== undefined ? { active: w['active'] as boolean } : {}),
      ...(w['timeoutMs'] !== undefined ? { timeoutMs: w['timeoutMs'] as number } : {}),
      ...(w['policy'] !== undefined ? { policy: policyFrom(w['policy'], "the request's policy") } : {}),
    };
  },
  async plan(opts) {
    const { policy: _unused, ...rest } = opts;
    const r = await (await import('./verify-exposure.js')).verifyExposure({ ...rest, active: false });
    return { host: r.host, targets: r.targets, rows: r.rows.map((x) => ({ id: x.id, packet: x.packet })), notices: r.notices };
  },
  async run(opts) {
    return (await import('./verify-exposure.js')).verifyExposure(opts);
  },
  report: (r, o) => formatExposure(r, o),
  failures: (r) => [
    ...r.rows.filter((x) => x.policy !== null && !x.policy.allowed).map((x) => `${x.id}: not allowed by the policy`),
    ...r.rows.filter((x) => x.active !== null && !x.active.agrees).map((x) => `${x.id}: the kernel disagrees (${x.active?.note ?? ''})`),
  ],
};
