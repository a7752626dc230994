// Small state files replaced atomically (write a temporary, fsync, rename, fsync the directory), so a reader
// never sees half a file and a crash never loses a completed write.
import * as fs from 'node:fs';
import * as path from 'node:path';
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
  // The rename itself must survive a crash too: sync the directory entry.
  const dir = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}
