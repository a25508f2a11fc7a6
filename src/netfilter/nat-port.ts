/**
 * The port a NAT statement gives a connection, as nf_nat chooses it (net/netfilter/nf_nat_core.c,
 * get_unique_tuple and nf_nat_l4proto_unique_tuple):
 *  - without `random`/`fully-random`, the kernel keeps the original port when it lies in the
 *    statement's range (or there is no range) and the resulting tuple is unique; else it picks one
 *    from the range (no range given: 1024-65535 for a source port ≥ 1024, 1-511 / 600-1023 below);
 *  - `random` (`--random`) and `fully-random` (`--random-fully`) always pick a port from the range;
 *  - `persistent` gives a client the same address of an address range each time.
 * What is certain (address, range, flags) is stated; a port the kernel chooses is marked, never
 * guessed. Live, the connection's conntrack entry says which port the kernel chose.
 */
import type { NatPortChoice } from '../model/explanation.js';
import type { NatFlag, Stmt } from '../ruleset/model.js';

export type PortChoice = NatPortChoice;

export interface NatPortInput {
  /** Source NAT (snat, masquerade) or destination NAT (dnat, redirect). */
  readonly manip: 'src' | 'dst';
  readonly port?: number;
  readonly portHi?: number;
  readonly flags?: readonly NatFlag[];
  /** The packet's port before the rewrite. */
  readonly original: number;
  /** The port conntrack shows the kernel chose (live), when known. */
  readonly conntrackPort?: number;
}

export interface NatPortResult {
  /** The port to carry on with (the original one when the kernel's choice is not known). */
  readonly port: number;
  /** Null when the port is certain (a single port given, or kept with no range and no flag). */
  readonly choice: PortChoice | null;
}

/** The range nf_nat picks a source port from when the rule gives none. */
function defaultSourceRange(original: number): readonly [number, number] {
  if (original >= 1024) return [1024, 65535];
  return original < 512 ? [1, 511] : [600, 1023];
}

/** Works out the port of one NAT statement for one packet. */
export function natPort(i: NatPortInput): NatPortResult {
  const flags = i.flags ?? [];
  const random = flags.includes('fully-random') ? 'fully-random' : flags.includes('random') ? 'random' : null;
  const given = i.port !== undefined;
  const lo = i.port ?? (i.manip === 'src' ? defaultSourceRange(i.original)[0] : i.original);
  const hi = i.portHi ?? (given ? lo : i.manip === 'src' ? defaultSourceRange(i.original)[1] : i.original);
  const range = `${lo}-${hi}`;
  if (given && lo === hi) return { port: lo, choice: null };
  // destination NAT without a port: the destination port is never changed
  if (i.manip === 'dst' && !given) return { port: i.original, choice: null };
  let choice: PortChoice | null;
  let port = i.original;
  if (random !== null) {
    choice = { how: 'kernel', range, reason: `${random}: the kernel picks a random port from ${range} for every connection` };
  } else if (i.original >= lo && i.original <= hi) {
    // plain masquerade/snat without a range: the usual case; only a clash changes the port
    choice = given
      ? {
          how: 'kept-if-unique',
          range,
          reason: `the original port ${i.original} is kept unless another connection holds that tuple; then the kernel picks one from ${range}`,
        }
      : null;
  } else {
    choice = { how: 'kernel', range, reason: `the original port ${i.original} is outside ${range}: the kernel picks one from the range` };
  }
  if (i.conntrackPort !== undefined && i.conntrackPort >= lo && i.conntrackPort <= hi) {
    if (choice === null && i.conntrackPort === i.original) return { port, choice: null };
    const why =
      choice === null
        ? `the original port ${i.original} was taken by another connection: the kernel picked ${i.conntrackPort} from ${range}`
        : choice.reason;
    port = i.conntrackPort;
    return { port, choice: { how: 'conntrack', range, reason: `${why} (conntrack shows ${i.conntrackPort})` } };
  }
  return { port, choice };
}

/** natPort for a NAT statement, with the note the explanation gives when the kernel chooses the port. */
export function statementPort(
  s: Extract<Stmt, { kind: 'nat' }>,
  manip: 'src' | 'dst',
  original: number,
  conntrackPort: number | undefined,
): NatPortResult & { readonly note: string | null } {
  const r = natPort({
    manip,
    original,
    ...(s.port !== undefined ? { port: s.port } : {}),
    ...(s.portHi !== undefined ? { portHi: s.portHi } : {}),
    ...(s.flags !== undefined ? { flags: s.flags } : {}),
    ...(conntrackPort !== undefined ? { conntrackPort } : {}),
  });
  const how = r.choice?.how === 'kept-if-unique' ? 'kept if unique' : 'chosen by the kernel';
  return { ...r, note: r.choice ? `${s.text}: port ${how}: ${r.choice.reason}` : null };
}
