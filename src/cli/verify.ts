import type { Command } from 'commander';
import { JourneyError } from '../model/errors.js';

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('(being built)')
    .action(() => {
      throw new JourneyError('E_USAGE', '`journey verify` is not built yet');
    });
}
