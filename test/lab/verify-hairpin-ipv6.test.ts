/**
 * `journey verify hairpin` over IPv6 against a real dockerd in the lab (scenario `ipv6`: dockerd
 * 20.10 with --ipv6, ip6tables, fixed-cidr-v6 fd00:17::/64, userland proxy off; web -p 8000:80,
 * client). One lab for the whole file:
 *   - healthy: the port published on `::` is checked over IPv6 next to the IPv4 one (same-bridge,
 *     self, host-address; [::1] skipped by design) and every check passes; each probe's explained
 *     path equals the kernel's own trace (`nft monitor trace`, taken by the lab around the whole run)
 *     and its conntrack entry and NAT are the ones `conntrack -L` lists;
 *   - broken: the ip6 self-hairpin MASQUERADE deleted (IPv6 self-hairpin fails, the missing rule
 *     named, IPv4 unaffected; compared with the kernel too), and bridge-nf-call-ip6tables off (IPv6
 *     same-bridge fails with that setting named, CLI exit status 1, IPv4 same-bridge passes).
 * Fails (never skips) when the lab cannot run.
 */
import { labTestId } from './lab-helpers.js';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertLabCanRun, labDown, labExec, labNames, labUp, leftovers, traceKernel, type LabInfo } from '../../lab/driver.js';
import type { KernelTrace, TracePacket } from '../../src/netfilter/kernel-trace.js';
import { verifyHairpin } from '../../src/verify/verify-hairpin.js';
import type { HairpinCheck, HairpinReport } from '../../src/verify/types.js';
import { compareSteps, natEqual, natFromConntrack } from '../../src/explain/kernel-compare.js';
import { loadLiveRuleset } from '../../src/explain/explain.js';
import { ruleTextAt } from '../../src/verify/docker-rules.js';

const ID = labTestId('h6');
const ROOT = new URL('../..', import.meta.url).pathname;
const CLI = join(ROOT, 'dist/src/cli/main.js');
const HOST6 = 'fd00:10::26';
const six = (c: HairpinCheck): boolean => c.to.startsWith('[');

function check(r: HairpinReport, kind: string, family: 4 | 6): HairpinCheck {
  const c = r.checks.find((x) => x.kind === kind && six(x) === (family === 6));
  if (!c) throw new Error(`no IPv${family} ${kind} check in ${r.checks.map((x) => x.id).join(', ')}`);
  return c;
}

/** The kernel-traced packet that is the probe's SYN (its source port is unique to the probe). */
function synOf(tr: KernelTrace, c: HairpinCheck): TracePacket | undefined {
  // verify's own tracing table (jl_verify_PID, for failing probes) is not part of the ruleset
  const own = (p: TracePacket): TracePacket => ({ ...p, steps: p.steps.filter((s) => !s.table.startsWith('jl_verify_')) });
  return tr.packets
    .filter((p) => p.first?.sport === c.probe?.localPort && p.first?.dport === c.port.hostPort && p.first?.proto === 'tcp')
    .map(own)
    .find((p) => p.steps.length > 0);
}

/**
 * Each probed check's evidence against the lab's own kernel trace and conntrack: the explained path
 * equals the kernel's steps for the probe's first packet (ip6 steps for an IPv6 probe), the reported
 * conntrack entry is the one `conntrack -L` lists, its NAT is the explained NAT and the NAT the
 * kernel's rules applied. Returns how many checks were compared, per family.
 */
async function compareWithKernel(tr: KernelTrace, r: HairpinReport, ns: string): Promise<{ v4: number; v6: number }> {
  const ruleset = await loadLiveRuleset({ netns: ns });
  const n = { v4: 0, v6: 0 };
  for (const c of r.checks.filter((x) => x.probe !== null && x.status !== 'skipped')) {
    const pk = synOf(tr, c);
    expect(pk, `kernel trace of ${c.id} (sport ${c.probe?.localPort})`).toBeDefined();
    const ex = c.evidence?.explanation;
    expect(ex, `explanation of ${c.id}`).toBeTruthy();
    if (!pk || !ex) continue;
    if (six(c))
      expect(
        pk.steps.some((s) => s.family === 'ip6'),
        `${c.id}: ip6 steps in the kernel trace`,
      ).toBe(true);
    const cmp = compareSteps({ ...ex, steps: ex.steps.filter((st) => st.table !== 'jl_trace') }, pk.steps, ruleset);
    expect(cmp.equal, `${c.id}\n simulated: ${cmp.simulated.join(' | ')}\n kernel: ${cmp.kernel.join(' | ')}`).toBe(true);
    const own = c.evidence?.conntrack[0];
    expect(own, `conntrack of ${c.id}`).toBeDefined();
    if (!own) continue;
    const kernelCt = tr.conntrack.find((e) => e.orig.sport === own.orig.sport && e.orig.dst === own.orig.dst && e.orig.src === own.orig.src);
    expect(kernelCt, `conntrack -L has ${c.id}`).toBeDefined();
    expect(kernelCt?.reply).toEqual(own.reply);
    expect(natEqual(ex.nat, natFromConntrack(own)), `${c.id}: explained NAT ${JSON.stringify(ex.nat)} vs conntrack`).toBe(true);
    // the NAT rules the kernel ran for the SYN: ip6tables-nft shows DNAT/MASQUERADE as compat targets
    // (no `dnat to` text in the trace), so each traced rule is named by its place in the ruleset
    const ranText = pk.steps.map(
      (st) => `${st.ruleNumber !== null ? (ruleTextAt(ruleset, st.family, st.table, st.chain, st.ruleNumber) ?? '') : ''} ${st.rule ?? ''}`,
    );
    const kDnat = ranText.some((t) => /-j DNAT|\bdnat\b/.test(t));
    const kMasq = ranText.some((t) => /-j (MASQUERADE|SNAT)|\b(masquerade|snat to)\b/.test(t));
    const ctNat = natFromConntrack(own);
    expect(ctNat.dnat !== null, `${c.id}: DNAT in the kernel trace vs conntrack (${ranText.join(' ; ')})`).toBe(kDnat);
    expect(ctNat.snat !== null, `${c.id}: MASQUERADE in the kernel trace vs conntrack`).toBe(kMasq);
    expect(pk.dropped, c.id).toBe(false);
    if (six(c)) n.v6++;
    else n.v4++;
  }
  return n;
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

let info: LabInfo | undefined;
let ns = '';
let dockerHost = '';

beforeAll(async () => {
  await assertLabCanRun();
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npm run build / scripts/setup)`);
  await labDown(ID).catch(() => undefined); // a previous run may have crashed
  info = await labUp({ id: ID, scenario: 'ipv6' });
  ns = info.netns.host;
  if (info.dockerHost === null) throw new Error('the ipv6 scenario has no dockerd');
  dockerHost = info.dockerHost;
}, 240_000);

afterAll(async () => {
  await labDown(ID);
  expect(await leftovers(labNames(ID))).toEqual([]);
}, 120_000);

describe('verify hairpin over IPv6 (lab ipv6: ip6tables on, userland proxy off)', () => {
  it('passes every IPv6 check on a healthy host, with evidence matching the kernel trace and conntrack', async () => {
    const tr = await traceKernel(ID, () => verifyHairpin({ netns: ns, dockerHost, timeoutMs: 1500 }), { filter: 'meta l4proto tcp' });
    const r = tr.actionResult as HairpinReport | undefined;
    if (!r) throw new Error(`verify failed: ${tr.actionError ?? '?'}`);
    const web6 = info?.containers.find((c) => c.name === 'web')?.ip6;
    const client6 = info?.containers.find((c) => c.name === 'client')?.ip6;
    expect(web6).toMatch(/^fd00:17::/);
    expect(r.ports.map((p) => `${p.hostIp} ${p.containerIp}`).sort()).toEqual(['0.0.0.0 172.17.0.2', `:: ${web6}`]);
    expect(r.notices.join('\n')).not.toMatch(/IPv6 published port/);
    expect(r.summary.fail, JSON.stringify(r.checks.filter((c) => c.status === 'fail').map((c) => [c.id, c.causes]))).toBe(0);
    expect(r.ok).toBe(true);
    // same bridge over IPv6: DNAT to web's IPv6 address, no SNAT (web sees client's IPv6 address)
    const same = check(r, 'same-bridge', 6);
    expect(same.status).toBe('pass');
    expect(same.to).toBe(`[${HOST6}]:8000`);
    expect(same.from.ip).toBe(client6);
    expect(same.evidence?.conntrack[0]?.reply.src).toBe(web6);
    expect(same.evidence?.conntrack[0]?.reply.dst).toBe(client6);
    // self-hairpin and the host calling its IPv6 address: DNAT + MASQUERADE to the IPv6 gateway
    for (const k of ['self', 'host-address']) {
      const c = check(r, k, 6);
      expect(c.status, c.id).toBe('pass');
      expect(c.evidence?.conntrack[0]?.reply.src).toBe(web6);
      expect(c.evidence?.conntrack[0]?.reply.dst).toBe('fd00:17::1');
      expect(c.expected?.targetSeesSource).toBe('fd00:17::1');
    }
    expect(check(r, 'self', 6).evidence?.packets.some((p) => p.includes('IP6') && p.includes(`${web6}.80`))).toBe(true);
    // [::1]: never NATed to a container, and no docker-proxy: skipped by design, saying so
    const lo = check(r, 'host-loopback', 6);
    expect(lo.status).toBe('skipped');
    expect(lo.skipReason).toMatch(/route_localnet/);
    const n = await compareWithKernel(tr, r, ns);
    process.stdout.write(`verify-hairpin-ipv6 (healthy): compared ${n.v6} IPv6 and ${n.v4} IPv4 checks with nft monitor trace and conntrack -L\n`);
    expect(n.v6).toBe(3);
    expect(n.v4).toBe(4);
  }, 120_000);

  it('names the missing ip6 self-hairpin MASQUERADE rule (IPv6 self-hairpin fails, IPv4 unaffected)', async () => {
    const web6 = info?.containers.find((c) => c.name === 'web')?.ip6 ?? '';
    const rule = ['-s', `${web6}/128`, '-d', `${web6}/128`, '-p', 'tcp', '-m', 'tcp', '--dport', '80', '-j', 'MASQUERADE'];
    await labExec(ID, 'host', ['ip6tables', '-t', 'nat', '-D', 'POSTROUTING', ...rule]);
    try {
      const tr = await traceKernel(ID, () => verifyHairpin({ netns: ns, dockerHost, kinds: ['self'], ports: ['8000'], timeoutMs: 1000 }), {
        filter: 'meta l4proto tcp',
      });
      const r = tr.actionResult as HairpinReport | undefined;
      if (!r) throw new Error(`verify failed: ${tr.actionError ?? '?'}`);
      expect(r.ok).toBe(false);
      const self6 = check(r, 'self', 6);
      expect(self6.status).toBe('fail');
      expect(self6.causes).toContain(`no MASQUERADE for self-hairpin to [${web6}]:80`);
      expect(self6.causes.some((c) => c.startsWith('hairpin_mode'))).toBe(false);
      expect(self6.expected?.sourceWhy).toMatch(/MISSING/);
      expect(check(r, 'self', 4).status).toBe('pass');
      const n = await compareWithKernel(tr, r, ns);
      process.stdout.write(`verify-hairpin-ipv6 (no ip6 self-hairpin MASQUERADE): compared ${n.v6} IPv6 and ${n.v4} IPv4 checks with the kernel\n`);
      expect(n).toEqual({ v4: 1, v6: 1 });
    } finally {
      await labExec(ID, 'host', ['ip6tables', '-t', 'nat', '-A', 'POSTROUTING', ...rule]);
    }
  }, 90_000);

  it('names bridge-nf-call-ip6tables off (IPv6 same-bridge: the reply is not un-DNATed), exit status 1, IPv4 passes', async () => {
    await labExec(ID, 'host', ['sysctl', '-qw', 'net.bridge.bridge-nf-call-ip6tables=0']);
    try {
      const res = await cli([
        'verify',
        'hairpin',
        '--netns',
        ns,
        '--docker-host',
        dockerHost,
        '--only',
        'same-bridge',
        '--timeout',
        '1000',
        '--json',
      ]);
      expect(res.stdout, `the CLI printed nothing: ${res.stderr}`).not.toBe('');
      expect(res.code).toBe(1);
      expect(res.stderr).toMatch(/E_VERIFY_FAILED/);
      const r = JSON.parse(res.stdout) as HairpinReport;
      const same6 = check(r, 'same-bridge', 6);
      expect(same6.status).toBe('fail');
      expect(same6.causes).toContain('bridge-nf-call-ip6tables is off');
      expect(same6.causes.join('\n')).toMatch(/the reply reached client from \[fd00:17::[0-9a-f:]+\]:80 without un-DNAT/);
      expect(check(r, 'same-bridge', 4).status).toBe('pass');
    } finally {
      await labExec(ID, 'host', ['sysctl', '-qw', 'net.bridge.bridge-nf-call-ip6tables=1']);
    }
  }, 90_000);
});
