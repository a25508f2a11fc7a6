import type { Command } from 'commander';
import { JourneyError } from '../model/errors.js';

export function registerExplain(program: Command): void {
  program
    .command('explain')
    .description('(being built)')
    .action(() => {
      throw new JourneyError('E_USAGE', '`journey explain` is not built yet');
    });
}
