import type { Command } from 'commander';
import { JourneyError } from '../model/errors.js';

export function registerLab(program: Command): void {
  program
    .command('lab')
    .description('(being built)')
    .action(() => {
      throw new JourneyError('E_USAGE', '`journey lab` is not built yet');
    });
}
