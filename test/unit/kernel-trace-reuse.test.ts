import { describe, expect, it } from 'vitest';
import { firstTraversal } from '../../src/explain/kernel-compare.js';

const st = (chain: string, ruleNumber: number | null, verdictKind: string) => ({ family: 'ip6', table: 'filter', chain, ruleNumber, verdictKind });

describe('a trace id the kernel reused for the next packet', () => {
  it('cuts the steps where a chain this packet entered comes again after an accept', () => {
    const one = [st('FORWARD', 1, 'jump'), st('DOCKER-FORWARD', 1, 'jump'), st('DOCKER-CT', null, 'return'), st('DOCKER-FORWARD', 4, 'accept')];
    expect(firstTraversal([...one, ...one])).toEqual(one);
    expect(firstTraversal(one)).toEqual(one);
    // a chain entered twice within one packet (jump, return, another rule of it) is kept
    const within = [st('FORWARD', 1, 'jump'), st('DOCKER-USER', 1, 'return'), st('FORWARD', 2, 'accept')];
    expect(firstTraversal(within)).toEqual(within);
  });
});
