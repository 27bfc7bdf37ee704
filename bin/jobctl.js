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
let cachedData;
try {
  // JOBCTL_CODE_CACHE=off: without it, for bench scenario 6 to measure what it saves.
  if (process.env.JOBCTL_CODE_CACHE !== 'off') cachedData = fs.readFileSync(cacheFile);
} catch {
  // No cache (a build that could not make one): compiled as it comes.
}
// A cache from another Node or V8 is rejected by V8 itself (script.cachedDataRejected) and costs nothing.
const script = new vm.Script(Module.wrap(fs.readFileSync(bundle, 'utf8')), { filename: bundle, cachedData });
if (process.env.JOBCTL_WRITE_CODE_CACHE === '1') process.once('exit', () => fs.writeFileSync(cacheFile, script.createCachedData()));
const module = { exports: {} };
script.runInThisContext().call(module.exports, module.exports, createRequire(bundle), module, bundle, path.dirname(bundle));
