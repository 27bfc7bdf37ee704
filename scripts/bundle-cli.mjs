// Bundles jobctl (compiled to dist/cli by tsc) and its dependencies into one
// CommonJS file, dist/jobctl.cjs, and makes V8's code cache for it,
// dist/jobctl.cache; bin/jobctl.js runs the one with the other. Loading one
// file instead of resolving and compiling a few hundred cuts ~100 ms from
// every jobctl call, and the code cache ~20 ms more (bench scenario 6
// measures both). CommonJS because Node 20 can give a code cache to a
// script (vm.Script) but not to an ES module.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

// V8 accepts a code cache made for any source of the same length: the
// bundle's last line names its build, and the cache starts with the same
// name, so bin/jobctl.js never runs one bundle with another's cache.
const buildId = randomUUID();
await build({
  entryPoints: ['dist/cli/main.js'],
  outfile: 'dist/jobctl.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  logLevel: 'warning',
  footer: { js: `// jobctl-build ${buildId}` },
});

// What one run compiles, start-up and command-line parsing: jobctl --version
// once, with bin/jobctl.js told to write the cache as it exits. A cache
// another Node or V8 flags would reject is not used: jobctl then compiles as
// if it had none.
rmSync('dist/jobctl.cache', { force: true });
execFileSync(process.execPath, ['bin/jobctl.js', '--version'], { env: { ...process.env, JOBCTL_WRITE_CODE_CACHE: '1' }, stdio: ['ignore', 'ignore', 'inherit'] });
