import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { netnsPath } from '../host/exec.js';
import { JourneyError } from '../model/errors.js';
import type { L4Proto, Tuple } from '../model/tuple.js';
import { parseIp } from '../ruleset/ip.js';
import { emptyHostContext, type HostContext } from '../ruleset/host-context.js';
import { inputNeverConsulted, withoutDnat } from '../explain/input-bypass.js';
import { compileRuleset, explainPacket, loadHostContext, loadHostContextFiles, loadLiveRuleset, loadRulesetFiles } from '../explain/explain.js';
import { formatExplanation } from '../explain/format.js';
import type { CtState } from '../netfilter/packet.js';
import type { ConntrackEntry } from '../model/conntrack.js';
import { findEntry, readConntrackFile, readLiveConntrack } from '../conntrack/lookup.js';
import { verifyPacket } from '../explain/packet-verify.js';
import type { Verification } from '../model/explanation.js';

/** The kernel's word on the explanation, in one line under it. */
function verificationLine(v: Verification): string {
  if (v.result === 'verified')
    return `kernel trace: verified (${v.kernel_steps ?? 0} steps equal the kernel's)${v.resolved?.length ? `; settled by the trace: ${v.resolved.map((r) => `${r.chain} ${r.rule}: ${r.kernel}`).join('; ')}` : ''}`;
  if (v.result === 'contradicted')
    return `kernel trace: CONTRADICTED at step ${(v.first_difference?.index ?? 0) + 1}: kernel ${v.first_difference?.kernel ?? '(ends)'}, simulator ${v.first_difference?.simulator ?? '(ends)'}; the path above is the kernel's`;
  return `kernel trace: unverified: ${v.reason ?? ''}`;
}

interface ExplainOpts {
  src?: string;
  dst?: string;
  proto: string;
  in?: string;
  local?: boolean;
  netns?: string;
  iptablesSave: string[];
  nftJson: string[];
  nft: string[];
  ipset: string[];
  addrs?: string;
  routes?: string;
  state?: string;
  reply?: boolean;
  conntrack?: string;
  all?: boolean;
  icmpType?: string;
  json?: boolean;
  verify?: string | boolean;
}

/** "1.2.3.4", "1.2.3.4:80", "[fd00::1]:80", "fd00::1". */
export function parseEndpoint(s: string, what: string): { addr: string; port: number | undefined } {
  let addr = s;
  let port: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (v6) {
    addr = v6[1] as string;
    port = v6[2];
  } else if ((s.match(/:/g) ?? []).length === 1) {
    [addr, port] = s.split(':') as [string, string];
  }
  if (parseIp(addr) === null) throw new JourneyError('E_USAGE', `${what}: not an address: ${s}`);
  if (port !== undefined && (!/^\d+$/.test(port) || Number(port) > 65535)) throw new JourneyError('E_USAGE', `${what}: bad port in ${s}`);
  return { addr, port: port === undefined ? undefined : Number(port) };
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function registerExplain(program: Command): void {
  program
    .command('explain')
    .description('Explain which hooks, tables, chains and rules a packet traverses, its NAT and verdict (live, or offline from ruleset files)')
    .option('--src <ip[:port]>', 'source address (and port); optional with --local')
    .requiredOption('--dst <ip[:port]>', 'destination address and port')
    .option('--proto <proto>', 'tcp | udp | icmp', 'tcp')
    .option('--in <iface>', 'interface the packet arrives on')
    .option('--local', 'the packet is sent by the host itself (output path)')
    .option('--netns <name>', 'explain against this network namespace (live)')
    .option('--iptables-save <file>', 'iptables-save / ip6tables-save output (repeatable)', collect, [])
    .option('--nft-json <file>', '`nft -j list ruleset` output (repeatable)', collect, [])
    .option('--nft <file>', 'nft ruleset text, parsed by nft in a scratch namespace (needs root; repeatable)', collect, [])
    .option('--ipset <file>', '`ipset save` output: members of the sets `-m set` matches (repeatable)', collect, [])
    .option('--addrs <file>', '`ip -j addr` output of the host')
    .option('--routes <file>', '`ip -j route show table all` output of the host')
    .option(
      '--state <state>',
      'conntrack state of the packet: new | established | related | invalid | untracked (default: new; established with --reply)',
    )
    .option('--reply', "the packet goes in the reply direction of its connection: explained from the connection's conntrack entry")
    .option('--conntrack <file>', '`conntrack -L` output (or /proc/net/nf_conntrack) holding the connection of an established/reply packet (offline)')
    .option('--all', 'show every traversed chain, also the empty ones (collapsed into one line by default)')
    .option('--icmp-type <n>', 'ICMP type (default echo request)')
    .option('--json', 'print the Explanation as JSON (docs/explain.md)')
    .option(
      '--verify [seconds]',
      "check the explanation against the kernel's own trace of a real packet (live, first packets): journey sends it for --local TCP/UDP, else waits up to SECONDS (default 30) for the next matching packet; off by default",
    )
    .action(async (o: ExplainOpts) => {
      if (!o.local && o.in === undefined) throw new JourneyError('E_USAGE', 'say where the packet comes from: --in IFACE, or --local');
      if (o.local && o.in !== undefined) throw new JourneyError('E_USAGE', '--in and --local exclude each other');
      if (!o.local && o.src === undefined) throw new JourneyError('E_USAGE', '--src is needed unless --local');
      const proto = o.proto.toLowerCase();
      if (!['tcp', 'udp', 'icmp', 'icmpv6', 'sctp'].includes(proto)) throw new JourneyError('E_USAGE', `--proto: tcp, udp or icmp, not ${o.proto}`);
      const state = o.state ?? (o.reply ? 'established' : 'new');
      if (!['new', 'established', 'related', 'invalid', 'untracked'].includes(state))
        throw new JourneyError('E_USAGE', `--state: bad state ${state}`);
      if (o.reply && state === 'new') throw new JourneyError('E_USAGE', '--reply: a reply is never the first packet of its connection (--state new)');
      const dst = parseEndpoint(o.dst as string, '--dst');
      const src = o.src !== undefined ? parseEndpoint(o.src, '--src') : { addr: '', port: undefined };
      const family = (parseIp(dst.addr) as { v: 4 | 6 }).v;
      if (src.addr !== '' && (parseIp(src.addr) as { v: 4 | 6 }).v !== family)
        throw new JourneyError('E_USAGE', '--src and --dst are of different IP versions');
      const ports = proto === 'tcp' || proto === 'udp' || proto === 'sctp';
      if (ports && dst.port === undefined) throw new JourneyError('E_USAGE', `--dst needs a port for ${proto}`);
      const l4: L4Proto = proto === 'icmp' && family === 6 ? 'icmpv6' : (proto as L4Proto);
      const protoNum = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132, other: 0 }[l4];
      const echoId = 1;
      const tuple: Tuple = {
        family,
        proto: l4,
        protoNum,
        src: src.addr,
        dst: dst.addr,
        sport: ports ? (src.port ?? 40000) : echoId,
        dport: ports ? (dst.port as number) : echoId,
        ...(l4 === 'icmp' || l4 === 'icmpv6'
          ? { icmpType: o.icmpType !== undefined ? Number(o.icmpType) : l4 === 'icmp' ? (o.reply ? 0 : 8) : o.reply ? 129 : 128, icmpCode: 0 }
          : {}),
      };
      const offline = o.iptablesSave.length + o.nftJson.length + o.nft.length > 0;
      if (offline && o.netns !== undefined) throw new JourneyError('E_USAGE', '--netns reads the live ruleset: do not combine it with ruleset files');
      const verifyS = o.verify === undefined || o.verify === false ? undefined : o.verify === true ? 30 : Number(o.verify);
      if (verifyS !== undefined && (!Number.isFinite(verifyS) || verifyS <= 0 || verifyS > 3600))
        throw new JourneyError('E_USAGE', `--verify SECONDS: 1 to 3600 (got "${String(o.verify)}")`);
      if (verifyS !== undefined && (offline || state !== 'new'))
        throw new JourneyError('E_USAGE', '--verify traces a live first packet: not with ruleset files, --state or --reply');
      if (!offline) {
        if (process.getuid?.() !== 0)
          throw new JourneyError(
            'E_NOT_ROOT',
            'reading the live ruleset (iptables-save, nft) needs root; or explain offline with --iptables-save/--nft-json/--nft',
          );
        if (o.netns !== undefined && !existsSync(netnsPath(o.netns)))
          throw new JourneyError('E_NO_NETNS', `no network namespace ${o.netns} (${netnsPath(o.netns)})`);
      }
      const ruleset = offline
        ? await loadRulesetFiles({ iptablesSave: o.iptablesSave, nftJson: o.nftJson, nft: o.nft, ipset: o.ipset })
        : await loadLiveRuleset(o.netns !== undefined ? { netns: o.netns } : {});
      let host: HostContext;
      if (o.addrs !== undefined || o.routes !== undefined) {
        host = await loadHostContextFiles({
          ...(o.addrs !== undefined ? { addrs: o.addrs } : {}),
          ...(o.routes !== undefined ? { routes: o.routes } : {}),
        });
      } else if (offline) {
        host = emptyHostContext();
        ruleset.notes.push('no --addrs/--routes: local addresses and routes are unknown (matches on them are indeterminate)');
      } else {
        host = await loadHostContext(o.netns !== undefined ? { netns: o.netns } : {});
      }
      const compiled = compileRuleset(ruleset, host);
      // a later packet of a connection: its conntrack entry (live, or --conntrack FILE) says what NAT conntrack applies
      const ctNotes: string[] = [];
      let entry: ConntrackEntry | undefined;
      if (state !== 'new' && state !== 'untracked' && tuple.src !== '') {
        const listing =
          o.conntrack !== undefined
            ? await readConntrackFile(o.conntrack)
            : !offline
              ? await readLiveConntrack(o.netns !== undefined ? { netns: o.netns } : {})
              : null;
        if (listing !== null) {
          const hit = findEntry(listing.entries, tuple, o.reply ? 'reply' : 'original');
          if (hit) {
            entry = hit.entry;
            const e = hit.entry;
            ctNotes.push(
              `conntrack entry (${listing.source}): original ${e.orig.src}:${e.orig.sport} → ${e.orig.dst}:${e.orig.dport}, reply ${e.reply.src}:${e.reply.sport} → ${e.reply.dst}:${e.reply.dport}${e.status.length ? ` [${e.status.join(' ')}]` : ''}`,
            );
          } else
            ctNotes.push(
              `no conntrack entry in ${listing.source} has this packet as its ${o.reply ? 'reply' : 'original'} tuple (${listing.entries.length} entries read${listing.skipped ? `, ${listing.skipped} lines skipped` : ''})`,
            );
        } else if (o.reply) ctNotes.push("offline without --conntrack FILE: the connection's conntrack entry is not known");
      }
      const explainTuple = (t: Tuple) =>
        explainPacket(compiled, {
          tuple: t,
          ...(o.in !== undefined ? { iif: o.in } : {}),
          ...(o.local ? { local: true } : {}),
          ctState: state as CtState,
          ...(o.reply ? { direction: 'reply' as const } : {}),
          ...(entry !== undefined ? { conntrack: entry } : {}),
        });
      const ex =
        verifyS === undefined
          ? explainTuple(tuple)
          : await verifyPacket({
              ...(o.netns !== undefined ? { netns: o.netns } : {}),
              tuple,
              srcGiven: o.src !== undefined,
              sportGiven: src.port !== undefined,
              local: o.local === true,
              ...(o.in !== undefined ? { iif: o.in } : {}),
              timeoutMs: verifyS * 1000,
              explain: explainTuple,
              ruleset: compiled.ruleset,
            });
      // a published port's packet never meets INPUT: say so when a firewall there would have judged it
      const bypass =
        state === 'new' && o.reply !== true && o.local !== true && o.in !== undefined && ex.nat.dnat !== null
          ? inputNeverConsulted(ex, { tuple, iif: o.in }, compileRuleset(withoutDnat(ruleset), host))
          : null;
      const notes = [...compiled.notes, ...ctNotes, ...(ex.notes ?? []), ...(bypass !== null ? [bypass.sentence] : [])];
      const withNotes = notes.length ? { ...ex, notes } : ex;
      if (o.json) {
        process.stdout.write(`${JSON.stringify(withNotes, null, 2)}\n`);
        return;
      }
      const ep = (a: string, p?: number): string =>
        p === undefined || !ports ? a || '(chosen by routing)' : `${a.includes(':') ? `[${a}]` : a || '(chosen by routing)'}:${p}`;
      const header = `${l4} ${ep(tuple.src, tuple.sport)} → ${ep(tuple.dst, tuple.dport)}${o.local ? ' sent by the host' : ` in on ${o.in as string}`} (${state}${o.reply ? ', reply direction' : ''})`;
      process.stdout.write(formatExplanation(withNotes, header, { all: o.all === true }));
      if (ex.verification !== undefined) process.stdout.write(`${verificationLine(ex.verification)}\n`);
    });
}
