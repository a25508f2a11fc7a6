import { JourneyError } from '../src/model/errors.js';
import type { LabInfo } from './driver.js';
import type { LabNames } from './names.js';

export async function replayUp(n: LabNames, file: string): Promise<LabInfo> {
  throw new JourneyError('E_LAB', `replay mode is being built (${n.id}, ${file})`);
}
