#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { reportError } from './exit-codes.js';
import { registerLab } from './lab.js';
import { registerExplain } from './explain.js';
import { registerWatch } from './watch.js';
import { registerServe } from './serve.js';
import { registerVerify } from './verify.js';
import { VERSION } from '../model/version.js';

/** Builds the `journey` program; each command lives in its own file under src/cli/. */
export function buildProgram(): Command {
  const program = new Command('journey')
    .description('Where did my packet go, and why? A live packet observer for Docker bridge networks.')
    .version(VERSION)
    .showHelpAfterError();
  registerLab(program);
  registerExplain(program);
  registerWatch(program);
  registerServe(program);
  registerVerify(program);
  return program;
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    process.exitCode = reportError(err);
  }
}

await main(process.argv);
