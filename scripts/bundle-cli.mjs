// Bundles jobctl (compiled to dist/cli by tsc) and its dependencies into one
// ES module, dist/jobctl.mjs, which bin/jobctl.js runs. Loading one file
// instead of resolving and compiling a few hundred cuts ~100 ms from every
// jobctl call (bench scenario 6 measures both).
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/cli/main.js'],
  outfile: 'dist/jobctl.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  logLevel: 'warning',
  // grpc-js and its dependencies are CommonJS: in an ES module they still
  // need require (Node's built-ins, protobufjs's eval("require")), and
  // __dirname must at least be defined (grpc-js names its channelz .proto
  // files with it, which jobctl never loads).
  banner: {
    js: [
      "import { createRequire as __jobctlCreateRequire } from 'node:module';",
      "import { dirname as __jobctlDirname } from 'node:path';",
      "import { fileURLToPath as __jobctlFileURLToPath } from 'node:url';",
      'const require = __jobctlCreateRequire(import.meta.url);',
      'const __filename = __jobctlFileURLToPath(import.meta.url);',
      'const __dirname = __jobctlDirname(__filename);',
    ].join('\n'),
  },
});
