import type { Command } from 'commander';
import { JourneyError } from '../model/errors.js';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('(being built)')
    .action(() => {
      throw new JourneyError('E_USAGE', '`journey serve` is not built yet');
    });
}
