/**
 * What the ruleset loaders' unit tests share: where the fixtures and moby's goldens are, and
 * the check that bad input is a coded parse error (E_PARSE), never another exception.
 */
import { expect } from 'vitest';
import { join } from 'node:path';
import { isJourneyError } from '../../src/model/errors.js';

export const ROOT = new URL('../..', import.meta.url).pathname;
export const GOLDEN = process.env['JOURNEY_CORPUS'] ?? join(ROOT, '..', 'shared', 'corpus', 'moby-golden');
export const FIX = join(ROOT, 'test', 'fixtures', 'ruleset');

export function expectParseError(fn: () => unknown, re?: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(isJourneyError(e), String(e)).toBe(true);
    if (isJourneyError(e)) {
      expect(e.code).toBe('E_PARSE');
      if (re) expect(e.message).toMatch(re);
    }
    return;
  }
  throw new Error('expected E_PARSE');
}

/** Either parses or throws E_PARSE: never another exception. */
export function parsesOrParseError(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!isJourneyError(e) || e.code !== 'E_PARSE') throw e;
  }
}
