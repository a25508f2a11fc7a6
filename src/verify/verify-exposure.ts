/**
 * `verifyExposure(opts)`: who can reach each published port and each container address of a
 * Docker host, and why — live (the host's ruleset read once, its addresses and routes, the Docker
 * API) or offline from files (ruleset, `ip -j addr`, `ip -j route`, a Docker snapshot). Every row
 * is decided by the simulator; `--active` confirms the rows a real source can play, `--policy`
 * says which reachable rows are not allowed.
 */
import { withoutDnat } from '../explain/input-bypass.js';
import { readFile } from 'node:fs/promises';
import { DockerClient, resolveDockerHost } from '../docker/client.js';
import { connectDocker, type DockerSnapshot } from '../docker/inventory.js';
import { ghostChains } from '../explain/kernel-compare.js';
import { compileRuleset, type CompiledRuleset } from '../netfilter/compile.js';
import { JourneyError } from '../model/errors.js';
import { loadHostContext, loadHostContextFiles, loadLiveRuleset, loadRulesetFiles, type RulesetFiles } from '../ruleset/load.js';
import { dockerFacts } from './docker-rules.js';
import { confirmRows } from './exposure-active.js';
import { judgeRow } from './exposure-judge.js';
import { exposureHost, exposureTargets, planRows, type ExposureInputs } from './exposure-plan.js';
import { applyPolicy, loadPolicy, type ExposurePolicy } from './exposure-policy.js';
import { EXPOSURE_REPORT_VERSION, type ExposureReport, type ExposureRow, type IpFamilyNumber, type SourceClass } from './exposure-types.js';

export interface ExposureOffline {
  readonly ruleset: RulesetFiles;
  readonly addrs?: string;
  readonly routes?: string;
  readonly dockerSnapshot?: string;
}

export interface ExposureOptions {
  readonly netns?: string;
  readonly dockerHost?: string;
  readonly noDocker?: boolean;
  /** Offline: read these files instead of the live host. */
  readonly offline?: ExposureOffline;
  /** Only these source classes / families. */
  readonly sources?: readonly SourceClass[];
  readonly families?: readonly IpFamilyNumber[];
  /** A policy file (YAML or JSON) or a parsed policy. */
  readonly policy?: string | ExposurePolicy;
  /** Confirm rows with real probes (live only). */
  readonly active?: boolean;
  /** Namespaces that are a source class, for --active (`{ lan: 'jl-x-ext' }`). */
  readonly sourceNetns?: Partial<Record<SourceClass, string>>;
  /** For --active: a LAN neighbour that routes 127.0.0.0/8 to the host. */
  readonly loopbackNetns?: string;
  readonly timeoutMs?: number;
  readonly log?: (msg: string) => void;
  readonly signal?: AbortSignal;
}

interface Loaded extends ExposureInputs {
  readonly mode: 'live' | 'offline';
  readonly notices: string[];
  readonly pids: Map<string, number>;
}

async function loadOffline(o: ExposureOffline): Promise<Loaded> {
  const rules = await loadRulesetFiles(o.ruleset);
  const context = await loadHostContextFiles({
    ...(o.addrs !== undefined ? { addrs: o.addrs } : {}),
    ...(o.routes !== undefined ? { routes: o.routes } : {}),
  });
  let docker: DockerSnapshot | null = null;
  if (o.dockerSnapshot !== undefined) {
    try {
      docker = JSON.parse(await readFile(o.dockerSnapshot, 'utf8')) as DockerSnapshot;
      if (!Array.isArray(docker.containers) || !Array.isArray(docker.networks)) throw new Error('no containers/networks lists');
    } catch (e) {
      throw new JourneyError('E_PARSE', `${o.dockerSnapshot}: not a Docker snapshot (${(e as Error).message})`, { file: o.dockerSnapshot });
    }
  }
  const notices = [...rules.notes];
  if (o.addrs === undefined) notices.push('no --addrs: the host has no addresses, only rows the ruleset alone decides are meaningful');
  if (docker === null) notices.push('no Docker snapshot: published ports come from the DNAT rules, docker-proxy is unknown');
  return { rules, context, docker, netns: null, mode: 'offline', notices, pids: new Map() };
}

async function loadLive(o: ExposureOptions): Promise<Loaded> {
  const ns = o.netns !== undefined ? { netns: o.netns } : {};
  // the ruleset is read once; the simulator and the facts both use this reading
  const [rules, context] = await Promise.all([loadLiveRuleset(ns), loadHostContext(ns)]);
  const notices = rules.notes.filter((n) => /could not be read/.test(n));
  let docker: DockerSnapshot | null = null;
  const pids = new Map<string, number>();
  if (o.noDocker !== true) {
    const c = await connectDocker(o.dockerHost !== undefined ? { dockerHost: o.dockerHost } : {});
    if (c.inventory !== null) {
      docker = c.inventory.snapshot;
      if (o.active === true) {
        const client = new DockerClient(resolveDockerHost(o.dockerHost));
        for (const ct of docker.containers) {
          const info = await client.get<{ State?: { Pid?: number } }>(`/containers/${ct.id}/json`).catch(() => null);
          const pid = info?.State?.Pid;
          if (typeof pid === 'number' && pid > 0) pids.set(ct.name, pid);
        }
      }
      c.inventory.close();
    } else notices.push(`${c.reason ?? 'Docker unreachable'}: published ports come from the DNAT rules`);
  }
  return { rules, context, docker, netns: o.netns ?? null, mode: 'live', notices, pids };
}

/** Every row of an input, decided by the simulator (pure but for the compile). */
export function exposureRows(
  inp: ExposureInputs,
  opts: Pick<ExposureOptions, 'sources' | 'families'> = {},
): { host: ReturnType<typeof exposureHost>; targets: ReturnType<typeof exposureTargets>; rows: ExposureRow[] } {
  const host = exposureHost(inp);
  const targets = exposureTargets(inp, host).filter((t) => opts.families === undefined || opts.families.includes(t.family));
  const compiled = compileRuleset(inp.rules, inp.context);
  let noDnat: CompiledRuleset | null | undefined;
  const ctx = {
    compiled,
    withoutDnat: () => {
      if (noDnat === undefined) {
        try {
          noDnat = compileRuleset(withoutDnat(inp.rules), inp.context);
        } catch {
          noDnat = null; // without the hypothetical, rows simply name no bypassed firewall
        }
      }
      return noDnat;
    },
    host,
    proxies: inp.docker?.proxies ?? [],
    userlandProxy: inp.docker?.userlandProxy ?? null,
    facts: { 4: dockerFacts(inp.rules, 4), 6: dockerFacts(inp.rules, 6) },
    ghosts: ghostChains(inp.rules),
  };
  const rows = planRows(inp, host, targets, opts.sources).map((r) => judgeRow(r, ctx));
  return { host, targets, rows };
}

/** Runs the exposure check and returns its report. */
export async function verifyExposure(opts: ExposureOptions = {}): Promise<ExposureReport> {
  const t0 = Date.now();
  const policy = typeof opts.policy === 'string' ? loadPolicy(opts.policy) : (opts.policy ?? null);
  if (opts.active === true && opts.offline !== undefined) throw new JourneyError('E_USAGE', '--active needs a live host, not files');
  const inp = opts.offline !== undefined ? await loadOffline(opts.offline) : await loadLive(opts);
  const notices = [...inp.notices];
  const { host, targets, rows: judged } = exposureRows(inp, opts);
  if (targets.length === 0) notices.push('no published port and no container address to check');
  let rows = judged;
  if (opts.active === true)
    rows = await confirmRows(
      rows,
      {
        ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
        docker: inp.docker,
        pids: inp.pids,
        sourceNetns: opts.sourceNetns ?? {},
        ...(opts.loopbackNetns !== undefined ? { loopbackNetns: opts.loopbackNetns } : {}),
        timeoutMs: opts.timeoutMs ?? 2000,
        ...(opts.log !== undefined ? { log: opts.log } : {}),
        ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
      },
      notices,
    );
  let violations = 0;
  if (policy !== null) {
    const p = applyPolicy(policy, rows);
    rows = p.rows;
    violations = p.violations.length;
  }
  const n = (s: string): number => rows.filter((r) => r.status === s).length;
  const compared = rows.filter((r) => r.active !== null).length;
  const agreed = rows.filter((r) => r.active?.agrees === true).length;
  return {
    v: EXPOSURE_REPORT_VERSION,
    check: 'exposure',
    mode: inp.mode,
    startedAt: new Date(t0).toISOString(),
    durationMs: Date.now() - t0,
    host: {
      netns: inp.netns,
      uplink: host.uplink,
      addresses: host.uplinkNets.map((u) => u.addr),
      bridges: host.bridges.map((b) => ({ name: b.name, subnets: b.nets.map((x) => `${x.gateway}/${x.cidr.len}`) })),
      backends: [...new Set([...dockerFacts(inp.rules, 4).backends, ...dockerFacts(inp.rules, 6).backends])],
      userlandProxy: inp.docker?.userlandProxy ?? null,
    },
    targets,
    rows,
    summary: {
      rows: rows.length,
      reachable: n('reachable'),
      notReachable: n('not-reachable'),
      indeterminate: n('indeterminate'),
      compared,
      agreed,
      violations,
    },
    ok: violations === 0 && compared === agreed,
    notices,
  };
}
