// The WebAssembly text a kernel's source file carries in its header comment (from "// (module" to the blank comment
// line before "// Memory:"), uncommented: the tests re-assemble it with wabt and compare with the shipped binary.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

/** The source of coordinator/strategy/<file> and the WAT in its comment. */
export async function kernelWat(file: string): Promise<{ src: string; wat: string }> {
  const src = await fs.readFile(path.join(__dirname, '..', '..', 'coordinator', 'strategy', file), 'utf8');
  const wat = src
    .slice(src.indexOf('// (module'), src.indexOf('\n//\n// Memory:'))
    .split('\n')
    .map((l) => l.replace(/^\/\/ ?/, ''))
    .join('\n');
  return { src, wat };
}
