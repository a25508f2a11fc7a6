/**
 * What the unit tests of `journey verify hairpin` share: the recorded "multi" host
 * (test/fixtures/verify/multi: Docker 20.10, userland proxy off, docker0 + br-neta + br-netb),
 * moby's Docker 28 iptables and Docker 29 nftables goldens (../shared/corpus), and small makers of
 * conntrack entries and probe results.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildHostFacts, type HostFacts } from '../../src/verify/host-facts.js';
import { dockerFacts } from '../../src/verify/docker-rules.js';
import { parseIptablesSave } from '../../src/ruleset/iptables-save.js';
import { parseNftJson } from '../../src/ruleset/nft-json.js';
import { emptyRuleset, mergeRulesets } from '../../src/ruleset/model.js';
import { gunzipSync } from 'node:zlib';
import type { PlannedCheck } from '../../src/verify/plan.js';
import { portsFromHost, type Endpoint, type Inventory } from '../../src/verify/endpoints.js';
import type { ConntrackEntry } from '../../src/model/conntrack.js';
import type { ProbeResult, TraceStep } from '../../src/verify/types.js';
export const ROOT = new URL('../..', import.meta.url).pathname;
export const FIX = join(ROOT, 'test/fixtures/verify/multi');
export const CORPUS = [join(ROOT, '..', 'shared', 'corpus', 'moby-golden'), '/work/shared/corpus/moby-golden'].find((p) => existsSync(p)) ?? '';
export const golden = (dir: string, name: string): string => {
  if (CORPUS === '') throw new Error('the moby goldens (../shared/corpus/moby-golden) are missing');
  return readFileSync(join(CORPUS, dir, name), 'utf8');
};
export const G28_PROXY_OFF = 'hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat-unprotected,bindlh=false__iptables.golden';
export const G28_PROXY_ON = 'hairpin=false,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__iptables.golden';
export const G28_BINDLH = 'hairpin=true,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=true__iptables.golden';
export const G29_PROXY_OFF = 'hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__ip.golden';
export const G29_NOICC = 'hairpin=true,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=false__ip.golden';
/** moby's nft goldens as `nft -j` (test/fixtures/ruleset/moby-nft-goldens.json.gz, keyed by name without .golden). */
export const NFT_BUNDLE = JSON.parse(
  gunzipSync(readFileSync(join(ROOT, 'test/fixtures/ruleset/moby-nft-goldens.json.gz'))).toString('utf8'),
) as Record<string, unknown>;
/** The facts of one ruleset, read through the one model (src/ruleset), as verify reads them. */
export const iptablesFacts = (text: string) => dockerFacts(parseIptablesSave(text));
export const nftFacts = (name: string) => dockerFacts(parseNftJson(NFT_BUNDLE[name.replace(/\.golden$/, '')], { source: name }));
export const nftGolden = (_dir: string, name: string): string => name;

export function sysctl(over: Record<string, string> = {}): Map<string, string> {
  return new Map(
    Object.entries({
      '/proc/sys/net/bridge/bridge-nf-call-iptables': '1',
      '/proc/sys/net/ipv4/ip_forward': '1',
      '/proc/sys/net/ipv4/conf/all/route_localnet': '0',
      '/proc/sys/net/ipv4/conf/docker0/route_localnet': '1',
      '/proc/sys/net/ipv4/conf/br-neta/route_localnet': '1',
      '/proc/sys/net/ipv4/conf/br-netb/route_localnet': '1',
      ...over,
    }),
  );
}

export function multiHost(opts: { iptables?: string; sysctl?: Record<string, string>; hairpinOff?: string; nft?: string } = {}): HostFacts {
  let blink = readFileSync(join(FIX, 'bridge-link.json'), 'utf8');
  const links = JSON.parse(blink) as { ifname: string; hairpin?: boolean }[];
  for (const l of links) l.hairpin = l.ifname !== opts.hairpinOff;
  blink = JSON.stringify(links);
  return buildHostFacts({
    netns: 'jl-f-host',
    netnsInode: null,
    ipLinkJson: readFileSync(join(FIX, 'ip-link.json'), 'utf8'),
    ipAddrJson: readFileSync(join(FIX, 'ip-addr.json'), 'utf8'),
    bridgeLinkJson: blink,
    sysctl: sysctl(opts.sysctl),
    rules: mergeRulesets(
      parseIptablesSave(opts.iptables ?? readFileSync(join(FIX, 'iptables-save.txt'), 'utf8')),
      opts.nft ? parseNftJson(NFT_BUNDLE[opts.nft]) : emptyRuleset(),
    ),
    dockerProxies: [],
  });
}

export const ENDPOINTS = JSON.parse(readFileSync(join(FIX, 'endpoints.json'), 'utf8')) as Endpoint[];

export function inventory(host: HostFacts, endpoints: readonly Endpoint[] = ENDPOINTS): Inventory {
  return {
    endpoints,
    ports: portsFromHost(host, endpoints),
    docker: { reachable: false, endpoint: '', reason: 'test', userlandProxy: null },
    notices: [],
  };
}

export function find(plan: readonly PlannedCheck[], kind: string, port: number, from?: string): PlannedCheck {
  const c = plan.find((x) => x.kind === kind && x.dstPort === port && (from === undefined || x.from.name === from));
  if (!c) throw new Error(`no ${kind} ${port} ${from ?? ''}: ${plan.map((x) => x.id).join(', ')}`);
  return c;
}

export function ct(
  o: [string, number, string, number],
  r: [string, number, string, number],
  status: ConntrackEntry['status'] = ['SEEN_REPLY', 'ASSURED'],
  tcpState = 'TIME_WAIT',
): ConntrackEntry {
  const t = (x: [string, number, string, number]) => ({
    family: 4 as const,
    proto: 'tcp' as const,
    protoNum: 6,
    src: x[0],
    sport: x[1],
    dst: x[2],
    dport: x[3],
  });
  return { id: `${o.join('/')}`, orig: t(o), reply: t(r), status, tcpState, mark: 0, zone: 0, timeout: 100, source: 'conntrack-tool' };
}

export const failedProbe = (port: number): ProbeResult => ({ connected: false, error: 'ETIMEDOUT', ms: 1000, localAddr: null, localPort: port });
export const okProbe = (port: number): ProbeResult => ({ connected: true, error: null, ms: 3, localAddr: null, localPort: port });
export const noEvidence = { conntrack: [], proxyLeg: null, packets: [], explanation: null, trace: [] as TraceStep[] };
