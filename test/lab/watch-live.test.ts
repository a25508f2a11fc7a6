/**
 * journey watch, live, in the lab (id "c2"): the real pipeline (capture, conntrack, Docker API,
 * simulator) on a real dockerd in network namespaces, against every standard probe of the
 * default scenario: legs, NAT equal to conntrack, names, a ruleset change followed, the command
 * itself. The multi and noproxy scenarios: watch-live-multi.test.ts. Fails loudly when the lab
 * cannot run (never skips).
 */
import { labTestId } from './lab-helpers.js';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { runProbe, listProbes, type LabInfo } from '../../lab/driver.js';
import { run } from '../../src/host/exec.js';
import { startPipeline, type Pipeline } from '../../src/pipeline/pipeline.js';
import { natOf } from '../../src/conntrack/nat.js';
import { tupleKey } from '../../src/model/tuple.js';
import {
  Recorder,
  sleep,
  waitFor,
  localPort,
  localAddr,
  conntrackList,
  flowsFor,
  labWithPipeline,
  stopLab,
  hasLegsOn,
  origIfaces,
} from './watch-live-helpers.js';

const ID = labTestId('c2');

describe('journey watch in the lab: scenario default (userland proxy on)', () => {
  let info: LabInfo;
  let p: Pipeline;
  let rec: Recorder;
  beforeAll(async () => {
    ({ info, p, rec } = await labWithPipeline(ID, 'default', { statsIntervalMs: 1000 }));
  });
  afterAll(() => stopLab(ID, p));

  it('runs on the fast paths and says what it uses', () => {
    expect(p.interfaces).toEqual(expect.arrayContaining(['eth0', 'docker0']));
    const n = p.notices.join('\n');
    expect(n).toMatch(/docker: 2 containers/);
    expect(n).toMatch(/userland-proxy on/);
    expect(n).not.toMatch(/no explanations/);
  });

  it('every standard probe: the flow appears once, with its legs, NAT equal to conntrack, the right names', async () => {
    const ns = info.netns.host;
    const web = info.containers.find((c) => c.name === 'web')!;
    const client = info.containers.find((c) => c.name === 'client')!;
    const problems: string[] = [];
    const check = (cond: boolean, what: string) => {
      if (!cond) problems.push(what);
    };
    for (const def of listProbes('default', info)) {
      const t0 = Date.now();
      const r = await runProbe(ID, def.name);
      expect(r.asExpected, `${def.name}: ${r.outcome} ${r.output}`).toBe(true);
      const sport = localPort(r);
      const proto = def.proto === 'icmp' ? 'icmp' : def.proto;
      const src = localAddr(r);
      const q = {
        src,
        dst: r.to.addr,
        proto,
        ...(r.to.port !== undefined && proto !== 'icmp' ? { dport: r.to.port } : {}),
        ...(sport !== undefined ? { sport } : {}),
      };
      // a flow without captured packets starts after 4x the start delay; a loaded machine is slower
      await waitFor(() => flowsFor(rec, q, t0).length > 0, 6000);
      await sleep(300); // a second flow for the same packets (a join that failed) would show by now
      const ct = await conntrackList(ns);
      const fs = flowsFor(rec, q, t0);
      check(fs.length === 1, `${def.name}: ${fs.length} flows for ${JSON.stringify(q)}`);
      const f = fs[0];
      if (!f) continue;
      // NAT equal to conntrack (flows with an entry)
      const entry = ct.find((e) => tupleKey(e.orig) === tupleKey(f.orig));
      const endedDestroyed = () =>
        rec.events.some((e) => e.type === 'flow.end' && (e as FlowEvent).flow.id === f.id && (e as FlowEvent).reason === 'destroyed');
      // a connection already gone from conntrack (refused, closed) must end as "destroyed"
      if (f.ctStatus.length > 0 && entry === undefined) {
        await sleep(2000);
        check(endedDestroyed(), `${def.name}: gone from conntrack but not ended as destroyed`);
      }
      if (f.ctStatus.length > 0 && !endedDestroyed()) {
        check(entry !== undefined, `${def.name}: no conntrack entry for ${tupleKey(f.orig)}`);
        if (entry)
          check(
            JSON.stringify(f.nat) === JSON.stringify(natOf(entry.orig, entry.reply)),
            `${def.name}: NAT ${JSON.stringify(f.nat)} != conntrack ${JSON.stringify(natOf(entry.orig, entry.reply))}`,
          );
      }
      const names = new Map(f.names.map((n) => [n.addr, n.container]));
      switch (def.name) {
        case 'ext-to-published':
        case 'ext2-to-published':
          check(JSON.stringify(origIfaces(f)) === '["eth0","docker0"]', `${def.name}: legs ${origIfaces(f)}`);
          check(f.nat.dnat?.to === `${web.ip}:80`, `${def.name}: dnat ${JSON.stringify(f.nat.dnat)}`);
          check(names.get(web.ip) === 'web', `${def.name}: names ${JSON.stringify(f.names)}`);
          check(f.explanation?.verdict === 'accept', `${def.name}: verdict ${f.explanation?.verdict}`);
          check(
            f.legs.some((l) => l.direction === 'reply' && l.iface === 'eth0'),
            `${def.name}: no reply on eth0`,
          );
          // in-kernel proof of the DNAT: the tuple before and after nat prerouting
          check(
            (f.hookTuples ?? []).some((h) => h.hook === 'prerouting' && h.tuple.dst === info.hostAddr) &&
              (f.hookTuples ?? []).some((h) => h.tuple.dst === web.ip),
            `${def.name}: hookTuples ${JSON.stringify(f.hookTuples?.map((h) => `${h.hook}/${h.priority} ${h.tuple.dst}`))}`,
          );
          break;
        case 'container-to-outside':
        case 'container-udp-outside':
        case 'container-ping-outside':
          check(JSON.stringify(origIfaces(f)) === '["docker0","eth0"]', `${def.name}: legs ${origIfaces(f)}`);
          check((f.nat.snat?.to ?? '').startsWith(info.hostAddr), `${def.name}: snat ${JSON.stringify(f.nat.snat)}`);
          check(f.legs.find((l) => l.iface === 'eth0' && l.direction === 'orig')?.tuple.src === info.hostAddr, `${def.name}: MASQUERADE leg`);
          check(f.explanation?.steps.some((s) => s.verdict === 'masquerade') === true, `${def.name}: no masquerade step`);
          check(names.get(client.ip) === 'client', `${def.name}: names ${JSON.stringify(f.names)}`);
          break;
        case 'hairpin':
        case 'self-hairpin': {
          check(f.nat.dnat === null, `${def.name}: proxied flows are not DNATed (${JSON.stringify(f.nat)})`);
          check(f.proxiedBy !== undefined && f.proxiedBy.peerFlowId !== null, `${def.name}: not linked to docker-proxy's backend`);
          const peer = f.proxiedBy?.peerFlowId ? rec.latest().get(f.proxiedBy.peerFlowId) : undefined;
          check(peer?.orig.dst === web.ip && peer.orig.dport === 80, `${def.name}: peer ${JSON.stringify(peer?.orig)}`);
          break;
        }
        case 'host-to-container':
          check(f.proxiedBy === undefined, `${def.name}: the host's own connection is not docker-proxy's`);
          check(JSON.stringify(origIfaces(f)) === '["docker0"]', `${def.name}: legs ${origIfaces(f)}`);
          break;
        case 'direct-access':
          check(JSON.stringify(origIfaces(f)) === '["eth0","docker0"]', `${def.name}: legs ${origIfaces(f)}`);
          check(f.nat.dnat === null && f.nat.snat === null, `${def.name}: nat`);
          break;
        case 'direct-unpublished':
          check(f.ctStatus.length === 0, `${def.name}: a dropped packet has no confirmed conntrack entry`);
          check(JSON.stringify(f.legs.map((l) => l.iface)) === '["eth0"]', `${def.name}: never reaches docker0 (${f.legs.map((l) => l.iface)})`);
          check(f.explanation?.verdict === 'drop', `${def.name}: verdict ${f.explanation?.verdict}`);
          // the kernel's own word (eBPF kfree_skb), joined to the rule by the explainer
          check(
            f.drops.some((d) => d.reason === 'NETFILTER_DROP' && d.rule?.chain === 'FORWARD'),
            `${def.name}: drops ${JSON.stringify(f.drops)}`,
          );
          break;
        case 'unpublished-port':
          check(
            f.legs.some((l) => l.iface === 'eth0'),
            `${def.name}: legs`,
          );
          break;
        default:
          break;
      }
    }
    // no flow appears twice
    const ids = rec.flows('flow.start').map((f) => f.id);
    expect(ids.length - new Set(ids).size).toBe(0);
    expect(problems).toEqual([]);
  });

  it('a ruleset change is followed: ruleset.changed, live flows re-explained, new flows see the new rule', async () => {
    const ns = info.netns.host;
    const before = rec.events.length;
    const ext2Flow = rec.flows('flow.start').find((f) => f.orig.src === info.ext2Addr && f.orig.dport === 8000);
    expect(ext2Flow?.explanation?.verdict).toBe('accept');
    await run(['iptables', '-I', 'DOCKER-USER', '-s', info.ext2Addr, '-j', 'DROP'], { netns: ns });
    try {
      let changed: JourneyEvent | undefined;
      for (let i = 0; i < 40 && !changed; i++) {
        await sleep(100);
        changed = rec.events.slice(before).find((e) => e.type === 'ruleset.changed');
      }
      expect(changed).toMatchObject({ type: 'ruleset.changed', tables: expect.arrayContaining(['ip filter']) });
      await sleep(400);
      // the earlier ext2 flow (still in conntrack) is re-explained: DOCKER-USER drops it now
      const upd = rec.events
        .slice(before)
        .filter((e): e is FlowEvent => e.type === 'flow.update' && e.flow.id === ext2Flow!.id)
        .at(-1);
      expect(upd?.flow.explanation?.verdict).toBe('drop');
      const t0 = Date.now();
      const r = await runProbe(ID, 'ext2-to-published');
      expect(r.answered).toBe(false);
      await sleep(2800);
      const fs = flowsFor(rec, { src: info.ext2Addr, dst: info.hostAddr, dport: 8000, proto: 'tcp' }, t0);
      expect(fs.length).toBeGreaterThanOrEqual(1);
      expect(fs[0]!.explanation?.verdict).toBe('drop');
      expect(fs[0]!.explanation?.steps.some((st) => st.chain === 'DOCKER-USER' && st.verdict === 'drop')).toBe(true);
      // DNAT happened before the drop: the packet never reached docker0
      expect(fs[0]!.legs.every((l) => l.iface === 'eth0')).toBe(true);
    } finally {
      await run(['iptables', '-D', 'DOCKER-USER', '-s', info.ext2Addr, '-j', 'DROP'], { netns: ns, allowFailure: true });
    }
  });

  for (const backend of ['tool', 'proc'] as const) {
    it(`the ${backend === 'tool' ? 'conntrack -E' : '/proc/net/nf_conntrack'} fallback joins the legs just the same, and says what it lacks`, async () => {
      const q = await startPipeline({
        netns: info.netns.host,
        dockerHost: info.dockerHost ?? (undefined as never),
        conntrack: backend,
        explain: false,
      });
      const r2 = new Recorder(q);
      try {
        await sleep(400);
        expect(q.notices.join('\n')).toMatch(/no SNAT\/DNAT status bits/);
        const t0 = Date.now();
        const r = await runProbe(ID, 'ext-to-published');
        expect(r.answered).toBe(true);
        const q2 = {
          src: info.extAddr,
          dst: info.hostAddr,
          dport: 8000,
          proto: 'tcp',
          ...(localPort(r) !== undefined ? { sport: localPort(r)! } : {}),
        };
        await waitFor(() => flowsFor(r2, q2, t0).some((f) => hasLegsOn(f, ['eth0', 'docker0'])), 15_000);
        const fs = flowsFor(r2, q2, t0);
        expect(fs).toHaveLength(1);
        expect(origIfaces(fs[0]!)).toEqual(['eth0', 'docker0']);
        expect(fs[0]!.nat.dnat?.to).toBe(`${info.containers.find((c) => c.name === 'web')!.ip}:80`);
        expect(fs[0]!.ctStatus).toContain('DST_NAT');
      } finally {
        await q.stop();
      }
    });
  }

  it('the command: one line per flow event, Ctrl-C exits 0 with the capture statistics; --json lines match the schema', async () => {
    const cli = join(process.cwd(), 'dist/src/cli/main.js');
    const runWatch = async (extra: string[]) => {
      const child = spawn('node', [cli, 'watch', '--netns', info.netns.host, '--docker-host', info.dockerHost!, '--no-color', ...extra], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      for (let i = 0; i < 100 && !/capturing on/.test(err + out); i++) await sleep(100);
      await sleep(500);
      const r = await runProbe(ID, 'ext-to-published');
      expect(r.answered).toBe(true);
      await sleep(1500);
      child.kill('SIGINT');
      const code = await Promise.race([exited, sleep(15_000).then(() => 'hung')]);
      return { code, out, err };
    };
    const text = await runWatch([]);
    expect(text.code).toBe(0);
    expect(text.out).toMatch(
      / START +web\(172\.17\.0\.2\):80 ← 10\.0\.10\.5:\d+ tcp via eth0→docker0 DNAT 10\.0\.10\.26:8000 ACCEPTED filter DOCKER#1 /,
    );
    expect(text.out).toMatch(/ END +web\(172\.17\.0\.2\):80 ← 10\.0\.10\.5:\d+ .*↑\d+\/\d+B ↓\d+\/\d+B shutdown/);
    expect(text.err).toMatch(/capture statistics/);
    expect(text.err).toMatch(/eth0: [1-9]\d* packets received, 0 dropped by kernel/);
    const json = await runWatch(['--json']);
    expect(json.code).toBe(0);
    const ajv = new Ajv2020({ strict: false });
    const validate = ajv.compile(JSON.parse(readFileSync(join(process.cwd(), 'docs/event-schema.json'), 'utf8')));
    const evs = json.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as JourneyEvent);
    for (const e of evs) expect(validate(e) ? null : { e, errors: validate.errors }).toBeNull();
    expect(evs.some((e) => e.type === 'flow.start' && (e as FlowEvent).flow.nat.dnat?.from === `${info.hostAddr}:8000`)).toBe(true);
    expect(evs.at(-1)?.type).toBe('capture.stats');
  });

  it('reports capture statistics with no kernel drops', () => {
    const stats = rec.events.filter((e) => e.type === 'capture.stats').at(-1) as Extract<JourneyEvent, { type: 'capture.stats' }>;
    expect(stats).toBeDefined();
    const eth0 = stats.stats.find((s) => s.iface === 'eth0');
    expect(eth0?.received).toBeGreaterThan(0);
    expect(stats.stats.reduce((a, s) => a + s.kernelDropped, 0)).toBe(0);
  });
});
