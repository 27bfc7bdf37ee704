// Usage: node dist/certs/make-dev-pki.js [dir]   (default: certs)
//
// Writes the missing files of the development PKI and says which. Silent when
// everything exists, because `npm start` runs it every time.
import { PkiError, writeDevPki } from './pki.js';

const USAGE = 'usage: make-dev-pki [dir]   (default dir: certs)';

async function main(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (argv.length > 1 || argv[0]?.startsWith('-')) {
    process.stderr.write(`make-dev-pki: ${USAGE}\n`);
    return 1;
  }
  try {
    const { written } = await writeDevPki(argv[0] ?? 'certs');
    for (const file of written) process.stdout.write(`created ${file}\n`);
    return 0;
  } catch (error) {
    if (!(error instanceof PkiError)) throw error;
    process.stderr.write(`make-dev-pki: ${error.message}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
