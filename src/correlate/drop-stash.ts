/**
 * Kernel drops whose flow does not exist yet (its packets are still held), by tuple key: bounded
 * per key and in keys; what is given up is counted.
 */
import type { DropInfo } from '../model/events.js';
import { reverseTuple, tupleKey } from '../model/tuple.js';
import type { FlowState } from './flow-state.js';

/** Joins a drop to its flow; false when the flow already keeps `max` drops (the drop is counted, not kept). */
export function addDrop(f: FlowState, drop: DropInfo, max: number): boolean {
  if (f.drops.length >= max) return false;
  f.drops = f.drops.concat(drop); // exactly as long as it is (see legs.ts)
  f.changed = true;
  return true;
}

export class DropStash {
  private readonly byKey = new Map<string, { drop: DropInfo; atMs: number }[]>();
  /** Drops given up (overflow or expired) without finding their flow. */
  unjoined = 0;

  constructor(
    private readonly perKey: number,
    private readonly maxKeys = 10_000,
  ) {}

  get size(): number {
    return this.byKey.size;
  }

  add(key: string, drop: DropInfo, atMs: number): void {
    const list = this.byKey.get(key) ?? [];
    list.push({ drop, atMs });
    if (list.length > this.perKey) this.unjoined += list.splice(0, list.length - this.perKey).length;
    this.byKey.delete(key); // re-inserted last: Map order = least recently stashed first
    this.byKey.set(key, list);
    if (this.byKey.size > this.maxKeys) {
      const oldest = this.byKey.keys().next().value;
      if (oldest !== undefined) {
        this.unjoined += this.byKey.get(oldest)?.length ?? 0;
        this.byKey.delete(oldest);
      }
    }
  }

  /** The drops stashed under any of `keys` (removed). */
  /** The drops stashed under any of a new flow's keys (both directions of both tuples). */
  takeFor(f: FlowState): DropInfo[] {
    if (this.byKey.size === 0) return [];
    return this.take([f.orig, reverseTuple(f.orig), ...(f.reply ? [f.reply, reverseTuple(f.reply)] : [])].map(tupleKey));
  }

  take(keys: readonly string[]): DropInfo[] {
    if (this.byKey.size === 0) return [];
    const out: DropInfo[] = [];
    for (const k of keys) {
      const list = this.byKey.get(k);
      if (!list) continue;
      this.byKey.delete(k);
      for (const d of list) out.push(d.drop);
    }
    return out;
  }

  /** Gives up the drops last stashed before `beforeMs` (counted as unjoined). */
  expire(beforeMs: number): void {
    for (const [k, list] of this.byKey) {
      if ((list[list.length - 1]?.atMs ?? 0) >= beforeMs) break;
      this.unjoined += list.length;
      this.byKey.delete(k);
    }
  }
}
