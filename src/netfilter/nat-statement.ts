/**
 * A NAT statement run by a walk (dnat, redirect, snat, masquerade): the packet's address and port
 * rewritten as nf_nat sets the translation up for a connection's first packet, the conntrack reply
 * tuple changed to match, and a port the kernel chooses from a range marked, not guessed.
 */
import type { Hook, StepVerdict } from '../model/explanation.js';
import { lookupRoute, sourceAddressFor } from '../ruleset/host-context.js';
import { type Ip, formatIp, parseIp } from '../ruleset/ip.js';
import type { CChain, CRule, CStmt } from './compile.js';
import { type PortChoice, statementPort } from './nat-port.js';
import { type Endpoint, fmt, hasPorts } from './sim-model.js';
import type { Walk } from './walk.js';

/** Sets the packet's port as nf_nat would; returns how it was chosen when the kernel chooses it. */
function choosePort(
  w: Walk,
  manip: 'src' | 'dst',
  s: Extract<CStmt, { kind: 'nat' }>['stmt'],
  original: number,
  ctPort: number | undefined,
): PortChoice | null {
  const r = statementPort(s, manip, original, ctPort);
  if (manip === 'src') w.p.sport = r.port;
  else w.p.dport = r.port;
  if (r.note !== null) w.notes.push(r.note);
  return r.choice;
}

/** Runs a NAT statement: the translation set up for the packet (its step's verdict and text), or unknown-terminal. */
export function runNat(
  w: Walk,
  hook: Hook,
  chain: CChain,
  r: CRule,
  s: Extract<CStmt, { kind: 'nat' }>['stmt'],
): { kind: 'nat'; verdict: StepVerdict; text: string } | { kind: 'unknown-terminal' } {
  const p = w.p;
  const isDst = s.type === 'dnat' || s.type === 'redirect';
  if (isDst) {
    const from: Endpoint = { addr: formatIp(p.dst), port: hasPorts(p.l4) ? p.dport : null };
    let addr: Ip | null = p.dst;
    if (s.type === 'redirect') {
      if (hook === 'output') addr = parseIp(p.v === 4 ? '127.0.0.1' : '::1');
      else {
        const itf = p.iif ? w.c.host.interfaces.get(p.iif) : undefined;
        const a = itf?.addrs.find((x) => x.family === p.v);
        addr = a ? a.ip : null;
        if (addr === null) {
          w.ind(chain, r, `redirect: the address of ${p.iif ?? '?'} is not known`);
          return { kind: 'unknown-terminal' };
        }
      }
    } else if (s.addr !== undefined) {
      addr = parseIp(s.addr);
      if (addr === null) {
        w.ind(chain, r, `dnat to ${s.addr}: not an address`);
        return { kind: 'unknown-terminal' };
      }
      if (s.addrHi !== undefined && s.addrHi !== s.addr)
        w.notes.push(`${s.text}: an address range; the first address is shown (the kernel picks one per connection)`);
    }
    p.dst = addr as Ip;
    const h = w.hint && w.hint.reply.src === formatIp(p.dst) ? w.hint.reply.sport : undefined;
    const choice = hasPorts(p.l4) ? choosePort(w, 'dst', s, p.dport, h) : null;
    if (p.ctReply) p.ctReply = { ...p.ctReply, src: p.dst, sport: p.dport };
    return setUp(w, 'dnat', from, p.dst, p.dport, choice, s.type === 'redirect' ? 'redirect' : 'dnat');
  }
  const from: Endpoint = { addr: formatIp(p.src), port: hasPorts(p.l4) ? p.sport : null };
  let addr: Ip | null;
  if (s.type === 'masquerade') {
    if (p.oif === null) {
      w.ind(chain, r, 'masquerade: the output interface is not known');
      return { kind: 'unknown-terminal' };
    }
    const rr = lookupRoute(w.c.host, p.dst);
    const a = sourceAddressFor(w.c.host, p.oif, p.dst, rr?.route ?? null);
    addr = a === null ? null : parseIp(a);
    if (addr === null) {
      w.ind(chain, r, `masquerade: no address known on ${p.oif} (give --addrs)`);
      return { kind: 'unknown-terminal' };
    }
  } else {
    addr = s.addr !== undefined ? parseIp(s.addr) : p.src;
    if (addr === null) {
      w.ind(chain, r, `snat to ${s.addr ?? '?'}: not an address`);
      return { kind: 'unknown-terminal' };
    }
  }
  p.src = addr;
  const h = w.hint && w.hint.reply.dst === formatIp(p.src) ? w.hint.reply.dport : undefined;
  const choice = hasPorts(p.l4) ? choosePort(w, 'src', s, p.sport, h) : null;
  if (p.ctReply) p.ctReply = { ...p.ctReply, dst: p.src, dport: p.sport };
  return setUp(w, 'snat', from, p.src, p.sport, choice, s.type === 'masquerade' ? 'masquerade' : 'snat');
}

/**
 * The translation set up (the NAT core counts it even when it maps the tuple onto itself); it is
 * recorded on the connection only when it changes the tuple or the kernel picks the port.
 */
function setUp(
  w: Walk,
  kind: 'dnat' | 'snat',
  from: Endpoint,
  addr: Ip,
  port: number,
  choice: PortChoice | null,
  verdict: StepVerdict,
): { kind: 'nat'; verdict: StepVerdict; text: string } {
  const to: Endpoint = { addr: formatIp(addr), port: hasPorts(w.p.l4) ? port : null, ...(choice ? { portChoice: choice } : {}) };
  w.natSetups++;
  if (to.addr !== from.addr || to.port !== from.port || choice?.how === 'kernel') {
    w.p.ctStatus.add(kind);
    w[kind] = { from, to };
  }
  return { kind: 'nat', verdict, text: `${fmt(from)} → ${fmt(to)}` };
}
