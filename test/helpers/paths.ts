import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The checkout's root: compiled tests live in dist/test/... */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const jobInitPath = path.join(repoRoot, 'build', 'job-init');
export const jobctlPath = path.join(repoRoot, 'bin', 'jobctl.js');
