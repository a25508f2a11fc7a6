/**
 * Every error journey raises carries a stable `code`. Only `src/cli/` turns codes into exit
 * statuses; library code throws or returns JourneyError and never calls process.exit.
 */
export type ErrorCode =
  | 'E_USAGE' // bad command-line arguments
  | 'E_NOT_ROOT' // an operation needs root (netns, nft, capture)
  | 'E_NO_NETNS' // a network namespace is missing or cannot be entered
  | 'E_TOOL_MISSING' // a required system tool (ip, nft, iptables-save, dockerd...) is absent
  | 'E_TOOL_FAILED' // a system tool ran and failed
  | 'E_PARSE' // malformed input (ruleset, pcap, trace, JSON): message names file and line/path
  | 'E_LAB' // the lab could not be brought up / torn down
  | 'E_CAPTURE' // a capture could not be opened or died
  | 'E_CONNTRACK' // conntrack source failure
  | 'E_NATIVE' // native binding missing or refused by the kernel
  | 'E_DOCKER' // Docker Engine API failure
  | 'E_TIMEOUT' // an operation did not finish in time
  | 'E_AUTH' // a client was refused (serve)
  | 'E_EXPORT' // an export target (IPFIX collector, NATS server) cannot be reached or refused journey
  | 'E_VERIFY_FAILED' // verify found failing checks
  | 'E_INTERNAL';

export class JourneyError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;
  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'JourneyError';
    this.code = code;
    this.details = details;
  }
}

export function isJourneyError(e: unknown): e is JourneyError {
  return e instanceof JourneyError;
}
