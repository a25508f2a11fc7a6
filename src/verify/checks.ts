/**
 * The verify checks: one registry. `journey verify <name>`, the WebSocket's verify requests (their
 * schema and serve's handler) and the web page's check list are built from it. A new check is one
 * new file exporting a `VerifyCheck` (./check.ts) plus its line here.
 */
import type { CheckReport, VerifyCheck } from './check.js';
import { exposureCheck } from './check-exposure.js';
import { hairpinCheck } from './check-hairpin.js';

export const VERIFY_CHECKS = [hairpinCheck, exposureCheck] as const;

export type VerifyCheckName = (typeof VERIFY_CHECKS)[number]['name'];
export const VERIFY_CHECK_NAMES: readonly VerifyCheckName[] = VERIFY_CHECKS.map((c) => c.name);

/** A registered check, its options and report types erased (each check validates its own). */
// biome-ignore lint/suspicious/noExplicitAny: the registry holds checks of different option types; each check checks its own
export type AnyVerifyCheck = VerifyCheck<VerifyCheckName, any, CheckReport>;

export function verifyCheck(name: string): AnyVerifyCheck | undefined {
  return (VERIFY_CHECKS as readonly AnyVerifyCheck[]).find((c) => c.name === name);
}
