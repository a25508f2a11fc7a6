import { isJourneyError, type ErrorCode } from '../model/errors.js';

/** The only place where error codes become exit statuses. */
const EXIT: Record<ErrorCode, number> = {
  E_USAGE: 2,
  E_NOT_ROOT: 3,
  E_NO_NETNS: 4,
  E_TOOL_MISSING: 5,
  E_TOOL_FAILED: 6,
  E_PARSE: 7,
  E_LAB: 8,
  E_CAPTURE: 9,
  E_CONNTRACK: 10,
  E_NATIVE: 11,
  E_DOCKER: 12,
  E_TIMEOUT: 13,
  E_AUTH: 14,
  E_EXPORT: 15,
  E_VERIFY_FAILED: 1,
  E_INTERNAL: 70,
};

export function exitCodeFor(err: unknown): number {
  return isJourneyError(err) ? EXIT[err.code] : EXIT.E_INTERNAL;
}

/** Prints an error on stderr (`journey: E_CODE: message`) and returns its exit status. */
export function reportError(err: unknown): number {
  if (isJourneyError(err)) {
    process.stderr.write(`journey: ${err.code}: ${err.message}\n`);
  } else {
    const e = err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stderr.write(`journey: E_INTERNAL: ${e}\n`);
  }
  return exitCodeFor(err);
}
