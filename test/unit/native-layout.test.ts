/**
 * The event structs are defined once, in native-bindings/include/journey_events.h, and mirrored in
 * src/native/layout.ts. This test computes the C layout from the header itself (natural alignment,
 * the rules the header states) and, unless JOURNEY_NATIVE=off, compares the offsets the compiled
 * addon reports (offsetof/sizeof). A field added on one side only fails here.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadBinding, nativeDisabled, projectRoot } from '../../src/native/binding.js';
import { CT_EVENT, EVENT, FILTER, MAX_SLOTS, NF_PROGRAMS, TUPLE } from '../../src/native/layout.js';

const header = readFileSync(join(projectRoot(), 'native-bindings', 'include', 'journey_events.h'), 'utf8');

const SIZES: Record<string, number> = { __u8: 1, char: 1, __u16: 2, __s16: 2, __u32: 4, __s32: 4, __u64: 8, __s64: 8 };

function defines(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of header.matchAll(/^#define\s+(\w+)\s+(\d+)u?\b/gm)) out[m[1] ?? ''] = Number(m[2]);
  return out;
}

interface CLayout {
  size: number;
  align: number;
  fields: Record<string, number>;
}

/** Computes a struct's layout from the header text with the C rules for natural alignment. */
function cLayout(name: string, known: Record<string, CLayout>): CLayout {
  const body = new RegExp(`struct ${name} \\{([\\s\\S]*?)\\n\\};`).exec(header)?.[1];
  if (body === undefined) throw new Error(`struct ${name} not in the header`);
  const defs = defines();
  const fields: Record<string, number> = {};
  let off = 0;
  let align = 1;
  const code = body.replace(/\/\*[\s\S]*?\*\//g, '');
  for (const raw of code.split(';')) {
    const decl = raw.trim();
    if (!decl) continue;
    const m = /^(struct\s+\w+|\w+)\s+(\w+)((?:\[\w+\])*)$/.exec(decl);
    if (!m) throw new Error(`cannot read declaration "${decl}"`);
    const type = m[1] ?? '';
    let size: number;
    let a: number;
    if (type.startsWith('struct ')) {
      const inner = known[type.slice(7)];
      if (!inner) throw new Error(`unknown ${type}`);
      size = inner.size;
      a = inner.align;
    } else {
      size = SIZES[type] ?? NaN;
      a = size;
    }
    if (!Number.isFinite(size)) throw new Error(`unknown type ${type}`);
    for (const dim of (m[3] ?? '').matchAll(/\[(\w+)\]/g)) {
      const d = dim[1] ?? '';
      size *= /^\d+$/.test(d) ? Number(d) : (defs[d] ?? NaN);
    }
    off = Math.ceil(off / a) * a;
    fields[m[2] ?? ''] = off;
    off += size;
    align = Math.max(align, a);
  }
  return { size: Math.ceil(off / align) * align, align, fields };
}

const tuple = cLayout('jn_tuple', {});
const known = { jn_tuple: tuple };
const event = cLayout('jn_event', known);
const ctEvent = cLayout('jn_ct_event', known);
const filter = cLayout('jn_filter', known);

describe('event layout: header vs TypeScript mirror', () => {
  it('struct jn_tuple', () => {
    expect(tuple.size).toBe(TUPLE.size);
    expect(tuple.fields).toEqual(TUPLE.fields);
  });
  it('struct jn_event', () => {
    expect(event.size).toBe(EVENT.size);
    const { _pad0: _p, ...fields } = event.fields;
    expect(fields).toEqual(EVENT.fields);
  });
  it('struct jn_ct_event', () => {
    expect(ctEvent.size).toBe(CT_EVENT.size);
    const { _pad0: _p, ...fields } = ctEvent.fields;
    expect(fields).toEqual(CT_EVENT.fields);
  });
  it('struct jn_filter', () => {
    expect(filter.size).toBe(FILTER.size);
    expect(filter.fields).toEqual(FILTER.fields);
  });
  it('limits', () => {
    expect(defines()['JN_NF_PROGS']).toBe(NF_PROGRAMS);
    expect(defines()['JN_MAX_SLOTS']).toBe(MAX_SLOTS);
  });
  it('sizes are multiples of 8 (records are packed back to back in a batch)', () => {
    for (const s of [EVENT.size, CT_EVENT.size]) expect(s % 8).toBe(0);
  });
});

describe.runIf(!nativeDisabled())('event layout: compiled addon vs TypeScript mirror', () => {
  it('the addon is built (scripts/setup runs native-bindings/build.sh)', () => {
    const { error } = loadBinding();
    expect(error).toBeNull();
  });
  it('offsetof/sizeof reported by the addon equal the mirror', () => {
    const b = loadBinding().binding;
    if (b === null) throw new Error('native addon not loadable');
    const l = b.layout();
    expect(l.tuple).toEqual({ size: TUPLE.size, fields: TUPLE.fields });
    expect(l.event).toEqual({ size: EVENT.size, fields: EVENT.fields });
    expect(l.ctEvent).toEqual({ size: CT_EVENT.size, fields: CT_EVENT.fields });
    expect(l.filter).toEqual({ size: FILTER.size, fields: FILTER.fields });
    expect(l.nfPrograms).toBe(NF_PROGRAMS);
    expect(l.maxSlots).toBe(MAX_SLOTS);
  });
});
