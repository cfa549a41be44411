// Regression (issue 16, kill-and-resume): a writer killed with SIGKILL leaves its temp file beside the target; the
// next write of that target removes it, but never a temp file whose writer is still running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { processGone, writeFileAtomic, writeFileAtomicSync } from '../src/io/atomic.js';

/** The id of a process that has exited (a child that ran and was reaped). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
  return Number(r.stdout.trim());
}

test('a write removes the temp files that writers which are gone left for the same target', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-orphans-'));
  const dead = deadPid();
  assert.ok(processGone(dead));
  assert.ok(!processGone(process.ppid));
  const orphan = path.join(dir, `.run.json.tmp-${dead}-0123abcd`);
  const live = path.join(dir, `.run.json.tmp-${process.ppid}-0123abcd`);
  const other = path.join(dir, `.eval.json.tmp-${dead}-0123abcd`);
  for (const f of [orphan, live, other]) fs.writeFileSync(f, '{"half');
  await writeFileAtomic(path.join(dir, 'run.json'), '{}\n');
  assert.deepEqual(fs.readdirSync(dir).sort(), [path.basename(other), path.basename(live), 'run.json'].sort());
  writeFileAtomicSync(path.join(dir, 'eval.json'), '{}\n');
  assert.deepEqual(fs.readdirSync(dir).sort(), [path.basename(live), 'eval.json', 'run.json'].sort());
  fs.rmSync(dir, { recursive: true, force: true });
});
