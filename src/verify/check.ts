/**
 * The shape of a verify check (`journey verify <name>`, and `{type:'verify', check:<name>}` over
 * serve's WebSocket). A check is one module exporting one `VerifyCheck`, registered in
 * ./checks.ts; the CLI, the WebSocket schema and serve's handler are built from that registry, so
 * a new check is one new file plus one registration line.
 */
/** A check's report: at least whether it passed (the CLI's exit status, the web page's badge). */
export interface CheckReport {
  readonly ok: boolean;
}

/** One CLI option of `journey verify <name>` (commander's flag syntax). */
export interface CheckOption {
  readonly flags: string;
  readonly description: string;
  readonly default?: string | boolean;
}

/** What the caller fixes whatever the options say: the host (CLI flags, or serve's own host) and how to stop. */
export interface CheckContext {
  readonly netns?: string;
  readonly dockerHost?: string;
  readonly noDocker?: boolean;
  readonly signal?: AbortSignal;
  readonly log?: (msg: string) => void;
}

export interface VerifyCheck<Name extends string, Options, Report extends CheckReport> {
  readonly name: Name;
  /** One line for `journey verify --help`. */
  readonly description: string;
  /** The command's own options (the host options --netns/--docker-host/--no-docker/--json are common). */
  readonly cliOptions: readonly CheckOption[];
  /** Whether the check needs root with these CLI options (it enters namespaces, reads conntrack...). */
  needsRoot(cli: Readonly<Record<string, unknown>>): boolean;
  /** The CLI's parsed options to the check's options; throws E_USAGE for a bad value. */
  fromCli(cli: Readonly<Record<string, unknown>>, ctx: CheckContext): Options;
  /** JSON Schema (2020-12, strict) of `options` in a WebSocket verify request: bounded, no host choice. */
  readonly wireSchema: Readonly<Record<string, unknown>>;
  /** A request's (schema-valid) options to the check's options, on the server's own host. */
  fromWire(wire: Readonly<Record<string, unknown>>, ctx: CheckContext): Options;
  /** What would be checked, sending nothing (`journey verify <name> --plan`). */
  plan(opts: Options): Promise<unknown>;
  /** Runs the check. Never exits the process: failures are in the report (`ok: false`). */
  run(opts: Options): Promise<Report>;
  /** The report for people. */
  report(r: Report, o: { readonly verbose: boolean }): string;
  /** The failed rows of a report, named (the CLI's E_VERIFY_FAILED message). */
  failures(r: Report): readonly string[];
}
