import type { Command } from 'commander';
import { JourneyError } from '../model/errors.js';

export function registerWatch(program: Command): void {
  program
    .command('watch')
    .description('(being built)')
    .action(() => {
      throw new JourneyError('E_USAGE', '`journey watch` is not built yet');
    });
}
