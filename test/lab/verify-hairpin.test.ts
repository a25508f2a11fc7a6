/**
 * `journey verify hairpin` against a real dockerd in the lab (lab id "f"):
 *   - userland proxy off with several bridges (scenario multi): every check passes, or is blocked
 *     by Docker 20.10's network isolation (cross-bridge), and each check's evidence matches the
 *     kernel's own trace (`nft monitor trace`, taken by the lab around the whole run) and conntrack;
 *   - broken hosts made in that lab: hairpin_mode off on a bridge port, the self-hairpin MASQUERADE
 *     deleted, a DROP in DOCKER-USER, bridge-nf-call-iptables off: each detected, the right cause
 *     named, and the CLI's exit status is 1;
 *   - userland proxy on (scenario default): docker-proxy answers, the target sees the gateway;
 *   - passive mode (live pipeline, and conntrack events only) classifies hairpin flows made by
 *     someone else, sending nothing;
 *   - Docker 28 (iptables) and Docker 29 (nftables) goldens in replay mode, no Docker API.
 * Fails (never skips) when the lab cannot run.
 */
import { labTestId } from './lab-helpers.js';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertLabCanRun, labDown, labExec, labUp, traceKernel, type LabInfo } from '../../lab/driver.js';
import type { KernelTrace, TracePacket } from '../../src/netfilter/kernel-trace.js';
import { verifyHairpin } from '../../src/verify/verify-hairpin.js';
import type { HairpinCheck, HairpinReport } from '../../src/verify/types.js';
import { compareSteps, natEqual, natFromConntrack } from '../../src/explain/kernel-compare.js';
import { loadLiveRuleset } from '../../src/explain/explain.js';
import { run } from '../../src/host/exec.js';

const ID = labTestId('f');
const ROOT = new URL('../..', import.meta.url).pathname;
const CLI = join(ROOT, 'dist/src/cli/main.js');

function check(r: HairpinReport, kind: string, port: number, from?: string): HairpinCheck {
  const c = r.checks.find((x) => x.kind === kind && x.port.hostPort === port && (from === undefined || x.from.name === from));
  if (!c) throw new Error(`no ${kind} check for port ${port}${from ? ` from ${from}` : ''} in ${r.checks.map((x) => x.id).join(', ')}`);
  return c;
}

/** The kernel-traced packet that is the probe's SYN (its source port is unique to the probe). */
function synOf(tr: KernelTrace, c: HairpinCheck): TracePacket | undefined {
  // verify's own tracing table (jl_verify_PID, for blocked/failing probes) is not part of the ruleset
  const own = (p: TracePacket): TracePacket => ({ ...p, steps: p.steps.filter((s) => !s.table.startsWith('jl_verify_')) });
  return tr.packets
    .filter((p) => p.first?.sport === c.probe?.localPort && p.first?.dport === c.port.hostPort && p.first?.proto === 'tcp')
    .map(own)
    .find((p) => p.steps.length > 0);
}

/**
 * Every probed check's evidence against the lab's own kernel trace (taken around the whole run) and
 * conntrack: the explained path equals the kernel's steps for the probe's first packet, the reported
 * conntrack entry is the one `conntrack -L` lists, and its NAT is the explained NAT. Returns how
 * many checks were compared in full.
 */
async function expectEvidenceMatchesKernel(tr: KernelTrace, r: HairpinReport, ns: string, opts: { steps: boolean }): Promise<number> {
  const ruleset = await loadLiveRuleset({ netns: ns });
  let compared = 0;
  for (const c of r.checks.filter((x) => x.probe !== null && x.status !== 'skipped')) {
    const pk = synOf(tr, c);
    expect(pk, `kernel trace of ${c.id} (sport ${c.probe?.localPort})`).toBeDefined();
    if (!pk) continue;
    const ex = c.evidence?.explanation;
    expect(ex, `explanation of ${c.id}`).toBeTruthy();
    if (!ex) continue;
    // the lab's tracing table existed while verify loaded the ruleset: leave it out, as the kernel side does
    if (opts.steps) {
      const cmp = compareSteps({ ...ex, steps: ex.steps.filter((st) => st.table !== 'jl_trace') }, pk.steps, ruleset);
      expect(cmp.equal, `${c.id}\n simulated: ${cmp.simulated.join(' | ')}\n kernel: ${cmp.kernel.join(' | ')}`).toBe(true);
    }
    // NAT as the kernel applied it (its dnat/masquerade rules in the trace) is the NAT verify reports
    const kDnat = pk.steps.map((st) => /\bdnat to (\S+)/.exec(st.rule ?? '')?.[1]).find((x) => x !== undefined) ?? null;
    const kMasq = pk.steps.some((st) => /\b(masquerade|snat to)\b/.test(st.rule ?? ''));
    if (c.status === 'blocked') {
      expect(pk.steps.find((st) => st.verdictKind === 'drop')?.chain, c.id).toBe('DOCKER-ISOLATION-STAGE-2');
      continue;
    }
    const own = c.evidence?.conntrack[0];
    expect(own, `conntrack of ${c.id}`).toBeDefined();
    if (!own) continue;
    const kernelCt = tr.conntrack.find((e) => e.orig.sport === own.orig.sport && e.orig.dst === own.orig.dst && e.orig.src === own.orig.src);
    expect(kernelCt, `conntrack -L has ${c.id}`).toBeDefined();
    expect(kernelCt?.reply).toEqual(own.reply);
    expect(natEqual(ex.nat, natFromConntrack(own)), `${c.id}: explained NAT ${JSON.stringify(ex.nat)} vs conntrack`).toBe(true);
    const ctNat = natFromConntrack(own);
    expect(ctNat.dnat?.to ?? null, `${c.id}: DNAT in the kernel trace vs conntrack`).toBe(kDnat);
    expect(ctNat.snat !== null, `${c.id}: MASQUERADE in the kernel trace vs conntrack`).toBe(kMasq);
    expect(pk.dropped, c.id).toBe(false);
    compared++;
  }
  return compared;
}

/** Waits until every container's TCP listeners are up (replay mode starts them in the background). */
async function waitListening(info: LabInfo): Promise<void> {
  for (const c of info.containers) {
    for (const l of (c.listens ?? []).filter((x) => x.proto === 'tcp')) {
      const t0 = Date.now();
      for (;;) {
        const r = await run(['ss', '-Hltn', `sport = :${l.port}`], { netns: c.pid, allowFailure: true });
        if (r.stdout.trim() !== '') break;
        if (Date.now() - t0 > 10_000) throw new Error(`${c.name}: nothing listens on tcp ${l.port} after 10 s`);
        await new Promise((res) => setTimeout(res, 100));
      }
    }
  }
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const ch = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    ch.stdout.on('data', (d: Buffer) => (out += d.toString()));
    ch.stderr.on('data', (d: Buffer) => (err += d.toString()));
    ch.on('close', (code) => resolve({ code: code ?? 128, stdout: out, stderr: err }));
  });
}

describe('verify hairpin: userland proxy off, several bridges (lab multi)', () => {
  let info: LabInfo;
  let ns: string;
  let dockerHost: string;
  beforeAll(async () => {
    await assertLabCanRun();
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npm run build / scripts/setup)`);
    await labDown(ID).catch(() => undefined);
    info = await labUp({ id: ID, scenario: 'multi' });
    ns = info.netns.host;
    if (info.dockerHost === null) throw new Error('the multi scenario has no dockerd');
    dockerHost = info.dockerHost;
  });
  afterAll(async () => {
    await labDown(ID);
  });

  it('passes every check (cross-bridge blocked by isolation), with evidence matching the kernel trace and conntrack', async () => {
    const tr = await traceKernel(ID, () => verifyHairpin({ netns: ns, dockerHost, timeoutMs: 1500 }), { filter: 'meta l4proto tcp' });
    const r = tr.actionResult as HairpinReport | undefined;
    if (!r) throw new Error(`verify failed: ${tr.actionError ?? '?'}`);
    expect(r.host.userlandProxy).toBe(false);
    expect(r.host.bridges.map((b) => b.name).sort()).toEqual(['br-neta', 'br-netb', 'docker0']);
    expect(r.ports.map((p) => p.hostPort).sort()).toEqual([8000, 8001]);
    expect(r.summary.fail, JSON.stringify(r.checks.filter((c) => c.status === 'fail').map((c) => [c.id, c.causes]))).toBe(0);
    expect(r.ok).toBe(true);
    // same bridge: DNAT, no SNAT between two containers
    const same = check(r, 'same-bridge', 8000, 'client');
    expect(same.status).toBe('pass');
    const sameCt = same.evidence?.conntrack[0];
    expect(sameCt?.reply.src).toBe('172.17.0.2');
    expect(sameCt?.reply.dst).toBe(same.from.ip); // the target saw the caller: no SNAT
    // self-hairpin: DNAT back to itself and MASQUERADE to the docker0 gateway
    const self = check(r, 'self', 8000);
    expect(self.status).toBe('pass');
    expect(self.evidence?.conntrack[0]?.reply.dst).toBe('172.17.0.1');
    expect(self.evidence?.packets.some((p) => p.includes('172.17.0.2') && p.includes('Out'))).toBe(true);
    // host on 127.0.0.1 and its own address: DNAT in OUTPUT + MASQUERADE (src-type LOCAL)
    for (const k of ['host-loopback', 'host-address']) {
      const c = check(r, k, 8000);
      expect(c.status).toBe('pass');
      expect(c.evidence?.conntrack[0]?.reply.src).toBe('172.17.0.2');
      expect(c.evidence?.conntrack[0]?.reply.dst).toBe('172.17.0.1');
    }
    // the other bridges: blocked by DOCKER-ISOLATION-STAGE-2, named by the kernel
    const cross = r.checks.filter((c) => c.kind === 'cross-bridge');
    expect(cross.length).toBe(4);
    for (const c of cross) {
      expect(c.status).toBe('blocked');
      expect(c.causes.join('\n')).toMatch(/dropped in DOCKER-ISOLATION-STAGE-2 by rule \d/);
    }

    // Evidence against the lab's own trace (taken independently, around the whole run) and conntrack.
    const compared = await expectEvidenceMatchesKernel(tr, r, ns, { steps: true });
    expect(compared).toBeGreaterThanOrEqual(6);
  });

  it('names hairpin_mode off on the target port (self-hairpin fails, exit status 1)', async () => {
    const port = (await verifyHairpin({ netns: ns, dockerHost, kinds: ['self'], ports: ['8000'], trace: 'none' })).host.bridges
      .find((b) => b.name === 'docker0')
      ?.ports.find((p) => p.endpoint === 'web')?.ifname;
    expect(port).toMatch(/^veth/);
    await labExec(ID, 'host', ['bridge', 'link', 'set', 'dev', port ?? '', 'hairpin', 'off']);
    try {
      const res = await cli([
        'verify',
        'hairpin',
        '--netns',
        ns,
        '--docker-host',
        dockerHost,
        '--port',
        '8000',
        '--only',
        'self',
        'same-bridge',
        '--timeout',
        '1000',
        '--json',
      ]);
      expect(res.stdout, `the CLI printed nothing: ${res.stderr}`).not.toBe('');
      expect(res.code).toBe(1);
      const r = JSON.parse(res.stdout) as HairpinReport;
      const self = check(r, 'self', 8000);
      expect(self.status).toBe('fail');
      expect(self.causes).toContain(`hairpin_mode is 0 on ${port} (port of web)`);
      expect(check(r, 'same-bridge', 8000).status).toBe('pass'); // only the self path needs hairpin_mode
      expect(res.stderr).toMatch(/E_VERIFY_FAILED/);
    } finally {
      await labExec(ID, 'host', ['bridge', 'link', 'set', 'dev', port ?? '', 'hairpin', 'on']);
    }
  });

  it('names the missing self-hairpin MASQUERADE rule', async () => {
    const rule = ['-s', '172.17.0.2/32', '-d', '172.17.0.2/32', '-p', 'tcp', '-m', 'tcp', '--dport', '80', '-j', 'MASQUERADE'];
    await labExec(ID, 'host', ['iptables', '-t', 'nat', '-D', 'POSTROUTING', ...rule]);
    try {
      const r = await verifyHairpin({ netns: ns, dockerHost, kinds: ['self'], ports: ['8000'], timeoutMs: 1000 });
      expect(r.ok).toBe(false);
      const self = check(r, 'self', 8000);
      expect(self.status).toBe('fail');
      expect(self.causes).toContain('no MASQUERADE for self-hairpin to 172.17.0.2:80');
      expect(self.causes.some((c) => c.startsWith('hairpin_mode'))).toBe(false);
    } finally {
      await labExec(ID, 'host', ['iptables', '-t', 'nat', '-A', 'POSTROUTING', ...rule]);
    }
  });

  it('names a DROP in DOCKER-USER (kernel trace), the host paths unaffected', async () => {
    await labExec(ID, 'host', ['iptables', '-I', 'DOCKER-USER', '1', '-d', '172.17.0.2/32', '-p', 'tcp', '--dport', '80', '-j', 'DROP']);
    try {
      const res = await cli([
        'verify',
        'hairpin',
        '--netns',
        ns,
        '--docker-host',
        dockerHost,
        '--port',
        '8000',
        '--only',
        'same-bridge',
        'self',
        'host-address',
        '--timeout',
        '1000',
      ]);
      expect(res.code, res.stderr).toBe(1);
      expect(res.stdout).toMatch(/FAIL\s+same-bridge/);
      expect(res.stdout).toContain('cause: dropped in DOCKER-USER by rule 1: -A DOCKER-USER -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j DROP');
      expect(res.stdout).toMatch(/PASS\s+host-address/); // OUTPUT -> POSTROUTING: FORWARD (and DOCKER-USER) not crossed
      expect(res.stdout).toMatch(/cause: the kernel dropped it \(eBPF\): NETFILTER_DROP/); // the drop reason, from tp_btf/kfree_skb
    } finally {
      await labExec(ID, 'host', ['iptables', '-D', 'DOCKER-USER', '-d', '172.17.0.2/32', '-p', 'tcp', '--dport', '80', '-j', 'DROP']);
    }
  });

  it('names bridge-nf-call-iptables off (same-bridge hairpin: the reply is not un-DNATed)', async () => {
    await labExec(ID, 'host', ['sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=0']);
    try {
      const r = await verifyHairpin({ netns: ns, dockerHost, kinds: ['same-bridge'], ports: ['8000'], timeoutMs: 1000 });
      expect(r.ok).toBe(false); // -> E_VERIFY_FAILED, exit status 1 in the CLI
      const same = check(r, 'same-bridge', 8000);
      expect(same.status).toBe('fail');
      expect(same.causes).toContain('bridge-nf-call-iptables is off');
      expect(same.causes.join('\n')).toMatch(/reply reached client from 172\.17\.0\.2:80 without un-DNAT/);
      expect(r.host.bridgeNfCallIptables).toBe(false);
    } finally {
      await labExec(ID, 'host', ['sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1']);
    }
    const again = await verifyHairpin({ netns: ns, dockerHost, kinds: ['same-bridge', 'self'], ports: ['8000'], trace: 'none' });
    expect(again.ok).toBe(true);
  });

  for (const [source, sports] of [
    ['pipeline', [47001, 47002]],
    ['conntrack', [47011, 47012]],
  ] as const) {
    it(`passive mode (${source}) classifies hairpin flows made by others and sends nothing`, async () => {
      const client = info.containers.find((c) => c.name === 'client');
      if (!client) throw new Error('no client container');
      const p = verifyHairpin({ netns: ns, dockerHost, passive: true, passiveSource: source, durationMs: 2500 });
      await new Promise((res) => setTimeout(res, 1200));
      // someone else's traffic: a connection from the client, and one from the host itself
      const connect = (host: string, sport: number): string[] => [
        process.execPath,
        '-e',
        `require('net').connect({host:'${host}',port:8000,localPort:${sport}}).on('connect',function(){this.end()})`,
      ];
      await labExec(ID, 'client', connect('10.0.10.26', sports[0]));
      await run(connect('127.0.0.1', sports[1]), { netns: ns });
      const r = await p;
      expect(r.mode).toBe('passive');
      expect(r.checks).toEqual([]);
      const f1 = r.flows.find((f) => f.conntrack.orig.sport === sports[0]);
      expect(f1?.kind).toBe('same-bridge');
      expect(f1?.status).toBe('pass');
      expect(f1?.dnatTo).toBe('172.17.0.2:80');
      expect(f1?.targetSaw).toBe(client.ip);
      expect(f1?.seen).toBe('event');
      const f2 = r.flows.find((f) => f.conntrack.orig.sport === sports[1]);
      expect(f2?.kind).toBe('host-loopback');
      expect(f2?.targetSaw).toBe('172.17.0.1');
    });
  }
});

describe('verify hairpin: userland proxy on (lab default)', () => {
  let ns: string;
  let dockerHost: string;
  beforeAll(async () => {
    await assertLabCanRun();
    const info = await labUp({ id: ID, scenario: 'default' });
    ns = info.netns.host;
    if (info.dockerHost === null) throw new Error('the default scenario has no dockerd');
    dockerHost = info.dockerHost;
    // a second bridge with a client, so the proxy-on host is checked across bridges too
    const env = { ...process.env, DOCKER_HOST: `unix://${dockerHost}` };
    await run(['docker', 'network', 'create', '--subnet', '172.30.0.0/24', 'other'], { env, timeoutMs: 30_000 });
    await run(['docker', 'run', '-d', '--name', 'far', '--network', 'other', 'lab/busybox:1', 'sleep', '1000000'], { env, timeoutMs: 30_000 });
  });
  afterAll(async () => {
    await labDown(ID);
    const left = (await run(['ip', 'netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith(`jl-${ID}-`));
    expect(left).toEqual([]);
  });

  it('docker-proxy answers the containers and 127.0.0.1; the target sees the docker0 gateway', async () => {
    const tr = await traceKernel(ID, () => verifyHairpin({ netns: ns, dockerHost, timeoutMs: 1500 }), { filter: 'meta l4proto tcp' });
    const r = tr.actionResult as HairpinReport | undefined;
    if (!r) throw new Error(`verify failed: ${tr.actionError ?? '?'}`);
    expect(r.host.userlandProxy).toBe(true);
    expect(r.host.dockerProxies.length).toBeGreaterThan(0);
    expect(r.ok).toBe(true);
    expect(r.summary.fail).toBe(0);
    for (const k of ['same-bridge', 'self', 'host-loopback', 'cross-bridge']) {
      const c = check(r, k, 8000);
      expect(c.status, `${c.id}: ${c.causes.join('; ')}`).toBe('pass');
      expect(c.expected?.via).toBe('docker-proxy');
      expect(c.deviations).toEqual([]);
      const own = c.evidence?.conntrack[0];
      expect(own && natFromConntrack(own)).toEqual({ dnat: null, snat: null }); // answered on the host
      expect(c.evidence?.proxyLeg?.orig.src).toBe('172.17.0.1');
      expect(c.evidence?.proxyLeg?.orig.dst).toBe('172.17.0.2');
      const pk = synOf(tr, c);
      expect(pk).toBeDefined();
      expect(pk?.steps.some((s) => s.hook === 'forward')).toBe(false); // delivered to docker-proxy, not forwarded
      expect(pk?.steps.some((s) => /dnat/.test(s.rule ?? ''))).toBe(false);
    }
    // the host calling its own address is DNATed in OUTPUT, with no MASQUERADE on Docker 20.10's proxy mode
    const ha = check(r, 'host-address', 8000);
    expect(ha.status).toBe('pass');
    expect(ha.expected?.via).toBe('dnat');
    expect(ha.evidence?.conntrack[0]?.reply.dst).toBe('10.0.10.26');
  });

  it('fails when docker-proxy accepts but cannot reach the container, naming the drop', async () => {
    const rule = ['-d', '172.17.0.2/32', '-p', 'tcp', '-m', 'tcp', '--dport', '80', '-j', 'DROP'];
    await labExec(ID, 'host', ['iptables', '-I', 'OUTPUT', '1', ...rule]);
    try {
      const r = await verifyHairpin({ netns: ns, dockerHost, kinds: ['same-bridge'], timeoutMs: 1000 });
      const c = check(r, 'same-bridge', 8000);
      expect(c.probe?.connected).toBe(true); // docker-proxy accepted...
      expect(c.status).toBe('fail'); // ...but the container was never reached
      expect(c.causes).toContain('dropped in OUTPUT by rule 1: -A OUTPUT -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j DROP');
      expect(c.causes.join('\n')).toMatch(/docker-proxy accepted the connection, but .*web \(172\.17\.0\.2:80\)/);
    } finally {
      await labExec(ID, 'host', ['iptables', '-D', 'OUTPUT', ...rule]);
    }
  });
});

const GOLDEN =
  [join(ROOT, '..', 'shared', 'corpus', 'moby-golden'), '/work/shared/corpus/moby-golden'].find((p) => existsSync(p)) ??
  '/work/shared/corpus/moby-golden';
const REPLAYS = [
  {
    name: 'Docker 28 iptables, userland proxy off',
    file: 'iptables/hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat-unprotected,bindlh=false__iptables.golden',
    proxy: false,
    generation: 'docker28+',
  },
  {
    name: 'Docker 29 nftables, userland proxy off',
    file: 'nftables/hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__ip.golden',
    proxy: false,
    generation: 'docker29-nftables',
  },
  {
    name: 'Docker 28 iptables, userland proxy on',
    file: 'iptables/hairpin=false,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__iptables.golden',
    proxy: true,
    generation: 'docker28+',
  },
] as const;

describe('verify hairpin: Docker 28/29 goldens in replay mode (no Docker API)', () => {
  beforeAll(async () => {
    await assertLabCanRun();
    if (!existsSync(GOLDEN)) throw new Error(`the moby goldens are missing (${GOLDEN})`);
  });
  afterAll(async () => {
    await labDown(ID);
  });

  for (const g of REPLAYS) {
    it(`${g.name}: every check passes, evidence matches the kernel trace and conntrack`, async () => {
      const info = await labUp({ id: ID, ruleset: join(GOLDEN, g.file) });
      try {
        await waitListening(info);
        const ns = info.netns.host;
        const tr = await traceKernel(ID, () => verifyHairpin({ netns: ns, noDocker: true, timeoutMs: 1500 }), { filter: 'meta l4proto tcp' });
        const r = tr.actionResult as HairpinReport | undefined;
        if (!r) throw new Error(`verify failed: ${tr.actionError ?? '?'}`);
        expect(r.host.docker.reachable).toBe(false);
        expect(r.host.generation).toBe(g.generation);
        expect(r.host.userlandProxy).toBe(g.proxy);
        expect(r.ports.map((p) => `${p.hostPort}->${p.containerIp}:${p.containerPort}`)).toEqual(['8080->192.168.0.2:80']);
        expect(r.summary.fail, JSON.stringify(r.checks.filter((c) => c.status === 'fail').map((c) => [c.id, c.causes]))).toBe(0);
        expect(r.ok).toBe(true);
        const self = check(r, 'self', 8080);
        expect(self.status).toBe('pass');
        expect(self.expected?.via).toBe(g.proxy ? 'docker-proxy' : 'dnat');
        if (g.proxy) {
          expect(self.evidence?.proxyLeg?.orig.src).toBe('192.168.0.1');
        } else {
          expect(self.evidence?.conntrack[0]?.reply.dst, self.evidence?.observed.join('\n')).toBe('192.168.0.1'); // MASQ TO OWN PORT
          expect(check(r, 'host-loopback', 8080).evidence?.conntrack[0]?.reply.src).toBe('192.168.0.2');
        }
        expect(check(r, 'host-address', 8080).status).toBe('pass');
        // the explainer's step list is compared with the kernel for the real engine above (and by the
        // explainer's own lab test); here the NAT and the conntrack entries are
        const compared = await expectEvidenceMatchesKernel(tr, r, ns, { steps: false });
        expect(compared).toBeGreaterThanOrEqual(3);
      } finally {
        await labDown(ID);
      }
    });
  }
});
