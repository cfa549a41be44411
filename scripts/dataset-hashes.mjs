// Checks the pinned-source table (src/method/sources.ts) against a local copy of the public prompt sets, laid out
// as the raw/ folder: prints each file's sha256 and size as found, and exits 1 if any differ from the table. This is
// how the table's hashes were made, and how to redo them if a pin moves.
//   npm run build && node scripts/dataset-hashes.mjs ../shared/datasets/raw
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FILE_SOURCES } from '../dist/src/method/sources.js';

const dir = process.argv[2];
if (!dir || !existsSync(dir)) {
  console.error('usage: node scripts/dataset-hashes.mjs RAW_DIR   (after npm run build)');
  process.exit(2);
}
let bad = 0;
for (const s of FILE_SOURCES) {
  const path = join(dir, s.file);
  if (!existsSync(path)) {
    console.log(`missing   ${s.file}`);
    bad++;
    continue;
  }
  const bytes = readFileSync(path);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const ok = sha256 === s.sha256 && bytes.length === s.bytes;
  if (!ok) bad++;
  console.log(`${ok ? 'ok      ' : 'DIFFERS '}  ${sha256}  ${String(bytes.length).padStart(8)}  ${s.file}`);
}
console.log(`${FILE_SOURCES.length - bad} of ${FILE_SOURCES.length} files match the table`);
process.exit(bad === 0 ? 0 : 1);
