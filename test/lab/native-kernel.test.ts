/**
 * Kernel visibility in the lab (id "d", scenario noproxy), ONE suite run twice: against the native
 * addon and against the fallbacks (JOURNEY_NATIVE=off). Real packets, real rules, compared with the
 * kernel's own trace (`nft monitor trace`) and with `conntrack -E`.
 *  - a DROP rule in DOCKER-USER: a drop with reason NETFILTER_DROP, the packet's tuple, and the
 *    rule the kernel trace says dropped it (fallback: "no drop reasons: eBPF unavailable", nothing);
 *  - published port, hairpin, outbound: the netfilter hook programs see the tuples before and after
 *    NAT equal to conntrack's original/reply tuples (fallback: the NAT from conntrack alone); the
 *    default plan, one side of each NAT, sees the same after NAT, and the tuple before DNAT it takes
 *    from conntrack equals what the full plan's program saw there;
 *  - the conntrack source's events equal `conntrack -E` for the same traffic.
 */
import { labTestId } from './lab-helpers.js';
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labDown, labUp, runProbe, traceKernel, type LabInfo } from '../../lab/driver.js';
import { parseConntrackLine } from '../../src/conntrack/parse.js';
import { openConntrackSource } from '../../src/conntrack/select.js';
import { run } from '../../src/host/exec.js';
import type { ConntrackEntry, ConntrackEvent } from '../../src/model/conntrack.js';
import { reverseTuple, type Tuple } from '../../src/model/tuple.js';
import { resetBindingCache } from '../../src/native/binding.js';
import { openKernelEvents, phaseOf, type HookEvent, type KernelDrop } from '../../src/native/index.js';
import { joinDropRule, HookProof } from '../../src/native/join.js';
import { compileRuleset, explainPacket, loadHostContext, loadLiveRuleset } from '../../src/explain/explain.js';

const ID = labTestId('d');
const MODES = ['native', 'fallback'] as const;
type Mode = (typeof MODES)[number];

let lab: LabInfo;

beforeAll(async () => {
  await labDown(ID).catch(() => undefined);
  lab = await labUp({ id: ID, scenario: 'noproxy' });
}, 300_000);

afterAll(async () => {
  delete process.env['JOURNEY_NATIVE'];
  resetBindingCache();
  await labDown(ID);
}, 180_000);

function useMode(mode: Mode): void {
  if (mode === 'fallback') process.env['JOURNEY_NATIVE'] = 'off';
  else delete process.env['JOURNEY_NATIVE'];
  resetBindingCache();
}

const same = (a: Tuple | null | undefined, b: Tuple | null | undefined): boolean =>
  !!a && !!b && a.proto === b.proto && a.src === b.src && a.dst === b.dst && a.sport === b.sport && a.dport === b.dport;
const show = (t: Tuple | null | undefined): string => (t ? `${t.proto} ${t.src}:${t.sport}>${t.dst}:${t.dport}` : 'null');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function web(): { ip: string } {
  const c = lab.containers.find((x) => x.name === 'web');
  if (!c) throw new Error('lab has no web container');
  return c;
}
function client(): { ip: string } {
  const c = lab.containers.find((x) => x.name === 'client');
  if (!c) throw new Error('lab has no client container');
  return c;
}

describe.each(MODES)('kernel visibility (%s)', (mode) => {
  beforeAll(() => useMode(mode));

  it('a DROP rule in DOCKER-USER: drop with reason NETFILTER_DROP, the tuple, and the rule that dropped it', async () => {
    useMode(mode);
    const host = lab.netns.host;
    const rule = ['-s', lab.extAddr, '-p', 'tcp', '--dport', '80', '-j', 'DROP'];
    await run(['iptables', '-I', 'DOCKER-USER', ...rule], { netns: host });
    const k = await openKernelEvents({ netns: host, filter: { addr: lab.extAddr, proto: 'tcp' }, hooks: 'none' });
    const drops: KernelDrop[] = [];
    k.onDrop((d) => drops.push(...d));
    try {
      // the kernel's own word (nft monitor trace): DOCKER-USER dropped it. The trace is read over
      // netlink and can miss lines on a loaded machine: one more probe then, never a silent pass.
      let tr = await traceKernel(ID, () => runProbe(ID, 'ext-to-published'), { filter: `ip saddr ${lab.extAddr} tcp dport 8000` });
      const stepOf = (t: typeof tr): (typeof tr.steps)[number] | undefined =>
        t.steps.find((s) => s.verdictKind === 'drop' && s.chain === 'DOCKER-USER');
      if (stepOf(tr) === undefined)
        tr = await traceKernel(ID, () => runProbe(ID, 'ext-to-published'), { filter: `ip saddr ${lab.extAddr} tcp dport 8000` });
      expect(tr.actionResult?.answered).toBe(false);
      await sleep(200);
      const dropStep = stepOf(tr);
      expect(dropStep, tr.text.slice(0, 2000)).toBeDefined();
      if (mode === 'native') {
        expect(k.lost).toEqual([]);
        expect(k.available.drops).toBe(true);
        const d = drops.find((x) => x.reason === 'NETFILTER_DROP');
        expect(d, JSON.stringify(drops.slice(0, 3))).toBeDefined();
        if (!d) return;
        // after DNAT: the forward path sees the container's address and port
        expect(d.tuple).toMatchObject({ proto: 'tcp', src: lab.extAddr, dst: web().ip, dport: 80 });
        expect(d.iface).toBe('eth0');
        expect(d.location).toMatch(/^(nf_hook_slow|nft_do_chain|nf_)\S*\+0x/);
        // conntrack's view of the dropped packet: DNAT from the published port
        expect(d.ct?.orig).toMatchObject({ dst: lab.hostAddr, dport: 8000 });
        // joined with the kernel trace: same packet (source port), the DOCKER-USER rule
        expect(dropStep?.packet?.sport ?? d.tuple?.sport).toBe(d.tuple?.sport);
        expect(dropStep?.rule ?? '').toMatch(/drop/);
        // joined with the explainer's verdict: the rule that dropped it, as the user wrote it
        const compiled = compileRuleset(await loadLiveRuleset({ netns: host }), await loadHostContext({ netns: host }));
        const joined = joinDropRule(d, (spec) => explainPacket(compiled, spec));
        expect(joined.rule).toEqual({
          table: 'filter',
          chain: 'DOCKER-USER',
          rule: `-A DOCKER-USER -s ${lab.extAddr}/32 -p tcp -m tcp --dport 80 -j DROP`,
        });
        // only this namespace's drops reached user space
        const hostIno = drops.map((x) => x.netns);
        expect(new Set(hostIno).size).toBe(1);
        expect(drops.every((x) => x.tuple?.src === lab.extAddr || x.tuple?.dst === lab.extAddr || x.ct !== null)).toBe(true);
      } else {
        expect(k.lost.join('\n')).toMatch(/^no drop reasons: eBPF unavailable: /);
        expect(drops).toEqual([]);
      }
    } finally {
      await k.stop();
      await run(['iptables', '-D', 'DOCKER-USER', ...rule], { netns: host });
    }
  });

  const natProbes = [
    { probe: 'ext-to-published', port: 8000, dnat: true, snat: false },
    { probe: 'hairpin', port: 8000, dnat: true, snat: false },
    { probe: 'container-to-outside', port: 80, dnat: false, snat: true },
  ] as const;

  it.each(natProbes)("$probe: tuples before and after NAT at the hooks equal conntrack's", async ({ probe, port, dnat, snat }) => {
    useMode(mode);
    const host = lab.netns.host;
    const ct = await openConntrackSource({ netns: host });
    expect(ct.source.kind).toBe(mode === 'native' ? 'netlink' : 'conntrack-tool');
    const events: ConntrackEvent[] = [];
    await ct.source.dump();
    await ct.source.start(
      (e) => events.push(...e),
      () => undefined,
    );
    // both plans at once: 'nat' links both sides of each NAT, the default 'after-nat' one side
    // (its priorities move by one where 'nat' holds them)
    const k = await openKernelEvents({ netns: host, filter: { proto: 'tcp', port }, hooks: 'nat' });
    const lean = await openKernelEvents({ netns: host, filter: { proto: 'tcp', port } });
    const hooks: HookEvent[] = [];
    const leanHooks: HookEvent[] = [];
    k.onHook((h) => hooks.push(...h));
    lean.onHook((h) => leanHooks.push(...h));
    try {
      const res = await runProbe(ID, probe);
      expect(res.answered, res.output).toBe(true);
      await sleep(400);
      const entry = events.map((e) => e.entry).find((e) => e.orig.src === res.from.addr && e.orig.dport === port && e.orig.dst === res.to.addr);
      expect(entry, events.map((e) => show(e.entry.orig)).join('\n')).toBeDefined();
      if (!entry) return;
      // what NAT did, by conntrack's tuples
      if (dnat) expect(entry.reply.src).not.toBe(entry.orig.dst);
      else expect(entry.reply.src).toBe(entry.orig.dst);
      if (snat) expect(entry.reply.dst).not.toBe(entry.orig.src);
      else expect(entry.reply.dst).toBe(entry.orig.src);
      if (mode === 'native') {
        // the kernel's status bits, which the text formats cannot show
        expect(entry.status.includes('DST_NAT')).toBe(dnat);
        expect(entry.status.includes('SRC_NAT')).toBe(snat);
        expect(k.lost).toEqual([]);
        checkHookTrail(hooks, entry, { dnat, snat });
        expect(lean.lost).toEqual([]);
        checkLeanTrail(leanHooks, hooks, entry);
        // the same proof as the pipeline gets it (FlowInfo.hookTuples)
        const proof = new HookProof();
        proof.add(hooks);
        const tuples = proof.detail(entry.orig);
        expect(tuples.length).toBeGreaterThanOrEqual(8);
        expect(show(tuples.find((t) => t.direction === 'orig' && t.hook === 'postrouting' && t.priority > 100)?.tuple)).toBe(
          show(reverseTuple(entry.reply)),
        );
      } else {
        expect(k.lost.join('\n')).toMatch(/no NAT proof at the netfilter hooks: eBPF unavailable/);
        expect(lean.lost.join('\n')).toMatch(/no NAT proof at the netfilter hooks: eBPF unavailable/);
        expect(hooks).toEqual([]);
        expect(leanHooks).toEqual([]);
      }
    } finally {
      await lean.stop();
      await k.stop();
      await ct.source.stop();
    }
  });

  it('conntrack events equal `conntrack -E` for the same traffic', async () => {
    useMode(mode);
    const host = lab.netns.host;
    // line-buffered, so its events can be counted while it runs
    const tool = spawn(
      'nsenter',
      [`--net=/var/run/netns/${host}`, '--', 'stdbuf', '-oL', 'conntrack', '-E', '-o', 'extended,id', '-p', 'tcp', '--orig-port-dst', '8000'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const toolOut: Buffer[] = [];
    tool.stdout.on('data', (b: Buffer) => toolOut.push(b));
    const ct = await openConntrackSource({ netns: host });
    const ours: ConntrackEvent[] = [];
    await ct.source.start(
      (e) => ours.push(...e),
      () => undefined,
    );
    const toolLines = (): number =>
      Buffer.concat(toolOut)
        .toString('utf8')
        .split('\n')
        .filter((l) => l.includes('dport=8000')).length;
    const ourCount = (): number => ours.filter((e) => e.entry.orig.proto === 'tcp' && e.entry.orig.dport === 8000).length;
    try {
      await sleep(300);
      for (const p of ['ext-to-published', 'ext2-to-published', 'hairpin']) expect((await runProbe(ID, p)).answered).toBe(true);
      // both have seen everything when their counts agree and stop moving (bounded: 5 s)
      let last = -1;
      for (let i = 0; i < 50; i++) {
        await sleep(100);
        const n = toolLines();
        if (n > 0 && n === ourCount() && n === last) break;
        last = n;
      }
    } finally {
      await ct.source.stop();
      tool.kill('SIGTERM');
      await new Promise((r) => tool.on('close', r));
    }
    const theirs = Buffer.concat(toolOut)
      .toString('utf8')
      .split('\n')
      .map((l) => parseConntrackLine(l, 'conntrack-tool'))
      .filter((x): x is NonNullable<typeof x> => x !== null && x.event !== null);
    const key = (type: string, e: ConntrackEntry): string => `${type} ${e.id} ${show(e.orig)} | ${show(e.reply)} ${e.tcpState ?? ''}`;
    const a = ours.filter((e) => e.entry.orig.proto === 'tcp' && e.entry.orig.dport === 8000).map((e) => key(e.type, e.entry));
    const b = theirs.map((x) => key(x.event ?? '', x.entry));
    expect(b.length).toBeGreaterThanOrEqual(3 * 3); // NEW + several UPDATEs per connection
    // the same events, each connection's in the same order, except two UPDATEs made at once on two
    // CPUs: their broadcasts may reach the two sockets in either order (CI saw FIN_WAIT/CLOSE_WAIT)
    expect([...a].sort()).toEqual([...b].sort());
    const ids = [...new Set(b.map((x) => x.split(' ')[1]))];
    let swapped = 0;
    for (const id of ids) {
      const mine = a.filter((x) => x.split(' ')[1] === id);
      const tool = b.filter((x) => x.split(' ')[1] === id);
      expect(mine[0]).toMatch(/^new /);
      for (let i = 0; i < tool.length; i++) {
        if (mine[i] === tool[i]) continue;
        const crossed =
          i + 1 < tool.length &&
          mine[i] === tool[i + 1] &&
          mine[i + 1] === tool[i] &&
          /^update /.test(tool[i] ?? '') &&
          /^update /.test(tool[i + 1] ?? '');
        if (!crossed) expect(mine, `connection ${id}, event ${i}`).toEqual(tool);
        swapped++;
        i++;
      }
    }
    console.log(
      `conntrack events: ${a.length} compared with conntrack -E (${ids.length} connections, ${swapped} pair(s) of concurrent updates crossed)`,
    );
  });
});

/** The in-kernel NAT proof: the first packet of each direction, before and after NAT, vs conntrack. */
function checkHookTrail(hooks: readonly HookEvent[], entry: ConntrackEntry, nat: { dnat: boolean; snat: boolean }): void {
  const mine = hooks.filter((h) => same(h.ct?.orig, entry.orig));
  const dump = mine.map((h) => `${h.hook}@${h.priority} ctinfo=${h.ct?.ctinfo} ${show(h.tuple)} [${h.ctStatus.join(',')}]`).join('\n');
  // by phase, not by number: a priority taken by another observer is moved (away from NAT)
  const first = (hook: string, priority: number, reply: boolean): HookEvent | undefined =>
    mine.find((h) => h.hook === hook && h.phase === phaseOf(hook as HookEvent['hook'], priority) && (h.ct?.ctinfo ?? 0) >= 3 === reply);
  // original direction: enters as conntrack's original tuple, leaves as the reversed reply tuple
  const inOrig = first('prerouting', -101, false);
  const outOrig = first('postrouting', 101, false);
  expect(inOrig, dump).toBeDefined();
  expect(outOrig, dump).toBeDefined();
  expect(show(inOrig?.tuple), dump).toBe(show(entry.orig));
  expect(show(outOrig?.tuple), dump).toBe(show(reverseTuple(entry.reply)));
  // DNAT is done between prerouting -101 and -99
  const afterDnat = first('prerouting', -99, false);
  expect(show(afterDnat?.tuple), dump).toBe(show(nat.dnat ? { ...entry.orig, dst: entry.reply.src, dport: entry.reply.sport } : entry.orig));
  if (nat.dnat) expect(afterDnat?.ctStatus, dump).toContain('DST_NAT');
  // SNAT between postrouting 99 and 101
  const beforeSnat = first('postrouting', 99, false);
  expect(show(beforeSnat?.tuple), dump).toBe(
    show(nat.snat ? { ...reverseTuple(entry.reply), src: entry.orig.src, sport: entry.orig.sport } : reverseTuple(entry.reply)),
  );
  if (nat.snat) expect(outOrig?.ctStatus, dump).toContain('SRC_NAT');
  // conntrack's tuples as the kernel holds them, at the last hook
  expect(show(outOrig?.ct?.reply), dump).toBe(show(entry.reply));
  // reply direction: arrives as the reply tuple, leaves as the reversed original
  const inReply = first('prerouting', -101, true);
  const outReply = first('postrouting', 101, true);
  expect(show(inReply?.tuple), dump).toBe(show(entry.reply));
  expect(show(outReply?.tuple), dump).toBe(show(reverseTuple(entry.orig)));
  expect(inReply?.ctStatus, dump).toContain('SEEN_REPLY');
  // the forward hook saw it (routed, not local)
  expect(
    mine.some((h) => h.hook === 'forward'),
    dump,
  ).toBe(true);
}

/**
 * The default 'after-nat' plan against 'nat' for the same packets: its programs see the same tuple
 * after DNAT and after SNAT, and the tuple before DNAT it takes from conntrack's entry (priority
 * -200) equals what the 'nat' plan's program before DNAT saw, in both directions.
 */
function checkLeanTrail(lean: readonly HookEvent[], full: readonly HookEvent[], entry: ConntrackEntry): void {
  const mine = (xs: readonly HookEvent[]): HookEvent[] => xs.filter((h) => same(h.ct?.orig, entry.orig));
  const dump = mine(lean)
    .map((h) => `${h.hook}@${h.priority}${h.from ? ` (${h.from})` : ''} ctinfo=${h.ct?.ctinfo} ${show(h.tuple)}`)
    .join('\n');
  const at = (xs: readonly HookEvent[], hook: string, phase: HookEvent['phase'], reply: boolean): HookEvent | undefined =>
    mine(xs).find((h) => h.hook === hook && h.phase === phase && (h.ct?.ctinfo ?? 0) >= 3 === reply);
  expect(
    mine(lean).some((h) => h.hook === 'forward'),
    dump,
  ).toBe(false);
  for (const reply of [false, true]) {
    const derived = at(lean, 'prerouting', 'before-nat', reply);
    expect(derived?.from, dump).toBe('conntrack');
    expect(derived?.priority, dump).toBe(-200);
    expect(show(derived?.tuple), dump).toBe(show(at(full, 'prerouting', 'before-nat', reply)?.tuple));
    for (const hook of ['prerouting', 'postrouting']) {
      const mineAfter = at(lean, hook, 'after-nat', reply);
      expect(mineAfter, `${hook} ${reply}\n${dump}`).toBeDefined();
      expect(mineAfter?.from, dump).toBeUndefined();
      expect(show(mineAfter?.tuple), dump).toBe(show(at(full, hook, 'after-nat', reply)?.tuple));
    }
  }
  // as the pipeline gets it: conntrack's side first, then the programs'
  const proof = new HookProof();
  proof.add(lean);
  const d = proof.detail(entry.orig);
  expect(d.map((t) => `${t.direction} ${t.hook}@${t.priority}`).slice(0, 2), dump).toEqual([
    'orig prerouting@-200',
    `orig prerouting@${at(lean, 'prerouting', 'after-nat', false)?.priority}`,
  ]);
}

void client;
