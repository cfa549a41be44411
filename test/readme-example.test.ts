// The README's library example is real: it is taken from README.md as written, type-checked against the package's
// own declarations (imported by the package name, as a user would), compiled and run on the project's model.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';

const ROOT = process.cwd();

/** The ```ts block under the README's "## Library" heading. */
function readmeExample(): string {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Library'));
  const m = /```ts\n([\s\S]*?)```/.exec(section);
  assert.ok(m, 'README.md has a ```ts block under "## Library"');
  return m[1]!;
}

test('the README library example type-checks, compiles and runs', () => {
  const code = readmeExample();
  assert.ok(code.split('\n').filter((l) => l.trim() !== '').length <= 14, 'the example stays short');
  // A user's project: this package installed (linked) as node_modules/scalpel, so `import … from 'scalpel'` goes
  // through package.json's "exports" to the compiled library and its declarations.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-readme-'));
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'scalpel'), 'dir');
  fs.writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  try {
    const file = path.join(dir, 'example.ts');
    fs.writeFileSync(file, code);
    const program = ts.createProgram([file], {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      skipLibCheck: true,
      types: ['node'],
      typeRoots: [path.join(ROOT, 'node_modules/@types')],
      outDir: dir,
    });
    const emitted = program.emit();
    const diagnostics = [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics].map((d) =>
      ts.flattenDiagnosticMessageText(d.messageText, '\n'),
    );
    assert.deepEqual(diagnostics, [], 'the example type-checks against the published declarations');
    fs.rmSync(path.join(ROOT, 'runs/library'), { recursive: true, force: true });
    const run = spawnSync(process.execPath, [path.join(dir, 'example.js')], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.equal(lines.length, 2, run.stdout);
    assert.match(lines[0]!, /^baseline: \S/);
    assert.match(lines[1]!, /^edited: {3}\S/);
    assert.ok(fs.existsSync(path.join(ROOT, 'runs/library/vector.safetensors')), 'the example selected a vector');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
