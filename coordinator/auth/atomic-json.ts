// Small state files replaced atomically (write a temporary, fsync, rename), so a reader never sees half a file.
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';

export function replaceAtomicallySync(file: string, text: string): void {
  const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}
