#!/usr/bin/env node
// Runs jobctl's bundle, dist/jobctl.cjs, with the code cache V8 made of it
// at build time (scripts/bundle-cli.mjs): the bundle's 1.3 MB are then not
// compiled again at every call.
import fs from 'node:fs';
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const bundle = fileURLToPath(new URL('../dist/jobctl.cjs', import.meta.url));
const cacheFile = bundle.replace(/\.cjs$/, '.cache');
const source = fs.readFileSync(bundle, 'utf8');
// The bundle's last line names its build; its cache starts with the same 36 characters.
const buildId = Buffer.from(source.slice(source.lastIndexOf('jobctl-build ') + 'jobctl-build '.length).trim());
const writeCache = process.env.JOBCTL_WRITE_CODE_CACHE === '1';
// Not for the job commands jobctl may start, nor for anything else it runs.
delete process.env.JOBCTL_WRITE_CODE_CACHE;
let cachedData;
try {
  // JOBCTL_CODE_CACHE=off: without it, for bench scenario 6 to measure what it saves.
  const cache = process.env.JOBCTL_CODE_CACHE === 'off' || writeCache ? undefined : fs.readFileSync(cacheFile);
  if (cache && buildId.length === 36 && cache.subarray(0, 36).equals(buildId)) cachedData = cache.subarray(36);
} catch {
  // No cache (a build that could not make one): compiled as it comes.
}
// A cache from another Node or V8 is rejected by V8 itself (script.cachedDataRejected) and costs nothing.
const script = new vm.Script(Module.wrap(source), { filename: bundle, cachedData });
if (writeCache) {
  process.once('exit', () => {
    // Whole or not at all: another jobctl may be reading it.
    const partial = `${cacheFile}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(partial, Buffer.concat([buildId, script.createCachedData()]));
      fs.renameSync(partial, cacheFile);
    } catch (err) {
      fs.rmSync(partial, { force: true });
      process.stderr.write(`jobctl: could not write the code cache ${cacheFile}: ${err.message}\n`);
    }
  });
}
const module = { exports: {} };
script.runInThisContext().call(module.exports, module.exports, createRequire(bundle), module, bundle, path.dirname(bundle));
