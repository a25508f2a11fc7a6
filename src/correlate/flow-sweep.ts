/**
 * Which flows a correlator tick looks at. While there are few (≤ `allUpTo`), all of them, in
 * table order. Beyond that a tick over every flow costs too much (100,000 flows: ~11 ms every
 * 100 ms, a stall that every packet arriving meanwhile waits out), so a tick looks at:
 *   - the flows touched since the last tick (a new leg, a conntrack state change, a drop, a
 *     docker-proxy link) and those not started yet, until they are: their events go out at once;
 *   - a round-robin slice of the table, so that every flow is still looked at every `rounds`
 *     ticks (about once a second at the live 100 ms tick): the idle timeout, counter-only
 *     updates and explanations redone after a ruleset change, none of which needs to be prompter.
 * A flow may be looked at twice in one tick; the visit decides what is due, so that is harmless.
 */
export class FlowSweep<F> {
  private readonly touched = new Set<F>();
  private cursor: Iterator<F> | null = null;

  constructor(
    private readonly flows: Map<string, F>,
    private readonly allUpTo = 2048,
    private readonly rounds = 10,
  ) {}

  /** The flow's state changed (or it is new): look at it at the next tick. */
  touch(f: F): void {
    this.touched.add(f);
  }

  /** The flow left the table. */
  forget(f: F): void {
    this.touched.delete(f);
  }

  /** Calls `visit` for this tick's flows; `visit` returns true to be called again at the next tick. */
  run(visit: (f: F) => boolean): void {
    if (this.flows.size <= this.allUpTo) {
      this.touched.clear();
      this.cursor = null;
      for (const f of this.flows.values()) if (visit(f)) this.touched.add(f);
      return;
    }
    const due = [...this.touched];
    this.touched.clear();
    for (const f of due) if (visit(f)) this.touched.add(f);
    let n = Math.ceil(this.flows.size / this.rounds);
    let wrapped = false;
    while (n-- > 0) {
      this.cursor ??= this.flows.values();
      const r = this.cursor.next();
      if (r.done === true) {
        // the end of the table: on from its start (once a tick)
        this.cursor = null;
        if (wrapped) break;
        wrapped = true;
        n++;
        continue;
      }
      if (visit(r.value)) this.touched.add(r.value);
    }
  }
}
