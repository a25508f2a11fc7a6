/**
 * Opening a file journey writes as root (`-w FILE`): like tcpdump, never through a symbolic link
 * that someone else planted. The last component is opened with O_NOFOLLOW; a link is followed only
 * when the user could have made it themselves: owned by this user, or owned by root in a
 * directory only its owner (this user or root) can write (`/dev/stdout`). A new file is 0600.
 */
import { constants, lstatSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { JourneyError } from '../model/errors.js';

const WRITE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC;

/** Whether a symbolic link at `path` is one this user made or may trust. */
function trustedLink(path: string, linkUid: number): boolean {
  const me = process.geteuid?.() ?? 0;
  if (linkUid === me) return true;
  if (linkUid !== 0) return false;
  const d = statSync(dirname(path));
  return (d.uid === 0 || d.uid === me) && (d.mode & 0o022) === 0;
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false; // nothing there: the EACCES is about the directory
  }
}

/** Opens `path` for writing (created 0600, truncated); returns the fd. Errors are E_CAPTURE naming the cause. */
export function openOutputFile(path: string, option = '--write'): number {
  try {
    return openSync(path, WRITE_FLAGS | constants.O_NOFOLLOW, 0o600);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    // a link at the end: ELOOP, or EACCES where the kernel's protected_symlinks refused it first
    if (err.code === 'ELOOP' || (err.code === 'EACCES' && isLink(path))) {
      let uid = -1;
      try {
        uid = lstatSync(path).uid;
      } catch {
        // vanished between the two calls: treated as an untrusted link below
      }
      if (uid >= 0 && trustedLink(path, uid)) {
        try {
          return openSync(path, WRITE_FLAGS, 0o600);
        } catch (e2) {
          throw new JourneyError('E_CAPTURE', `${option} ${path}: cannot write (${(e2 as Error).message})`, { path }, { cause: e2 });
        }
      }
      throw new JourneyError(
        'E_CAPTURE',
        `${option} ${path}: is a symbolic link owned by uid ${uid}, not by you: refusing to follow it (name the file it points to if that is what you mean)`,
        { path, linkUid: uid },
      );
    }
    throw new JourneyError('E_CAPTURE', `${option} ${path}: cannot write (${err.code ?? err.message})`, { path }, { cause: e });
  }
}
