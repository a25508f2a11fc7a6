/**
 * IPv6 in the kernel-events path (lab scenario `ipv6`, lab up once):
 *  - the eBPF programs walk IPv6 extension headers (hop-by-hop, destination options) to the
 *    transport header: a real TCP SYN sent with both headers (sticky socket options, python3) from
 *    ext2 to the published port is dropped by the ip6 DOCKER-USER rule; the drop carries reason
 *    NETFILTER_DROP and the TCP tuple after DNAT (not protocol 0/60 without ports), and joins the
 *    ip6tables rule that dropped it. The kernel's own word: `nft monitor trace` saw DOCKER-USER drop
 *    it, and the packet on the wire (tcpdump) carried the extension headers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labDown, labExec, labUp, type LabInfo } from '../../lab/driver.js';
import { run } from '../../src/host/exec.js';
import { openKernelEvents, type KernelDrop } from '../../src/native/index.js';
import { joinDropRule } from '../../src/native/join.js';
import { compileRuleset, explainPacket, loadHostContext, loadLiveRuleset } from '../../src/explain/explain.js';
import { labTestId } from './lab-helpers.js';

const ID = labTestId('v6w');
let lab: LabInfo;

beforeAll(async () => {
  await labDown(ID).catch(() => undefined);
  lab = await labUp({ id: ID, scenario: 'ipv6' });
}, 300_000);

afterAll(async () => {
  await labDown(ID);
}, 180_000);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A TCP connect over IPv6 with a hop-by-hop and a destination-options header (PadN, 8 bytes each). */
const SENDER = [
  'import socket,sys',
  's=socket.socket(socket.AF_INET6,socket.SOCK_STREAM)',
  'opt=bytes([0,0,1,4,0,0,0,0])',
  's.setsockopt(socket.IPPROTO_IPV6,54,opt)', // IPV6_HOPOPTS
  's.setsockopt(socket.IPPROTO_IPV6,59,opt)', // IPV6_DSTOPTS
  's.settimeout(1.5)',
  'try:',
  '  s.connect((sys.argv[1],int(sys.argv[2])))',
  '  print("connected")',
  'except Exception as e:',
  '  print("refused:",type(e).__name__)',
].join('\n');

describe('IPv6 extension headers in the eBPF programs', () => {
  it('a SYN with hop-by-hop + destination options dropped by the ip6 DOCKER-USER rule: reason, TCP tuple, rule', async () => {
    const v6 = lab.v6;
    if (!v6) throw new Error('the ipv6 scenario has no IPv6 addresses');
    const web = lab.containers.find((c) => c.name === 'web');
    if (!web?.ip6) throw new Error(`web has no IPv6 address: ${JSON.stringify(lab.containers)}`);
    const host = lab.netns.host;
    const k = await openKernelEvents({ netns: host, filter: { addr: v6.ext2Addr }, hooks: 'none' });
    const drops: KernelDrop[] = [];
    k.onDrop((d) => drops.push(...d));
    // the packet on the wire: tcpdump on ext2's side shows the extension headers
    const dump = run(['timeout', '20', 'tcpdump', '-ni', 'any', '-c', '1', '-vv', 'ip6', 'and', 'src', v6.ext2Addr, 'and', 'dst', v6.hostAddr], {
      netns: lab.netns.ext2,
      allowFailure: true,
    });
    await sleep(1500);
    let found: KernelDrop | undefined;
    let sent = 0;
    try {
      // poll: each attempt sends one more real SYN (with its retransmissions), up to 6 attempts
      for (let i = 0; i < 6 && !found; i++) {
        const r = await labExec(ID, 'ext2', ['python3', '-c', SENDER, v6.hostAddr, '8000']);
        sent++;
        expect(r.stdout).toMatch(/refused: (timeout|TimeoutError)/);
        for (let w = 0; w < 20 && !found; w++) {
          found = drops.find((d) => d.reason === 'NETFILTER_DROP' && d.tuple?.src === v6.ext2Addr);
          if (!found) await sleep(100);
        }
      }
      expect(k.lost).toEqual([]);
      expect(found, JSON.stringify(drops.slice(0, 4))).toBeDefined();
      if (!found) return;
      // the transport header found behind two extension headers: TCP, ports, after DNAT
      expect(found.tuple).toMatchObject({ proto: 'tcp', src: v6.ext2Addr, dst: web.ip6, dport: 80 });
      expect(found.tuple?.sport).toBeGreaterThan(1023);
      expect(found.ct?.orig).toMatchObject({ dst: v6.hostAddr, dport: 8000 });
      const compiled = compileRuleset(await loadLiveRuleset({ netns: host }), await loadHostContext({ netns: host }));
      const joined = joinDropRule(found, (spec) => explainPacket(compiled, spec));
      expect(joined.rule).toMatchObject({ table: 'filter', chain: 'DOCKER-USER' });
      expect(joined.rule?.rule).toMatch(new RegExp(`-s ${v6.ext2Addr}/128 .*-j DROP`));
      const wire = (await dump).stdout;
      expect(wire, wire).toMatch(/HBH/);
      expect(wire, wire).toMatch(/DSTOPT/);
      console.log(
        `ipv6 ext headers: ${sent} connect(s) with HBH+DSTOPT, drop ${found.reason} tuple ${found.tuple?.proto} ` +
          `[${found.tuple?.src}]:${found.tuple?.sport} > [${found.tuple?.dst}]:${found.tuple?.dport}, rule ${joined.rule?.rule}`,
      );
    } finally {
      await k.stop();
    }
  }, 120_000);
});
