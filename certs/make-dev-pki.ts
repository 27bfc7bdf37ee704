// Usage: node dist/certs/make-dev-pki.js [dir] [--node NAME]... [--etcd-member NAME]...
//
// Writes the missing files of the development PKI and says which. Silent when
// everything exists, because `npm start` runs it every time.
import { parseArgs } from 'node:util';
import { PkiError, etcdMemberCertOptions, nodeCertOptions, writeDevPki, type DevLeaf } from './pki.js';

const USAGE = `usage: make-dev-pki [dir] [--node NAME]... [--etcd-member NAME]...
  dir                 where the files go (default: certs)
  --node NAME         also a fleet node's pair, node-NAME-{cert,key}.pem (CN NAME, OU node)
  --etcd-member NAME  also an etcd member's pair, etcd-NAME-{cert,key}.pem (CN etcd-NAME, OU etcd)
Both may be repeated. NAME: lowercase letters, digits, '.' and '-'.`;

type Command =
  | { kind: 'write'; dir: string; leaves: DevLeaf[] }
  | { kind: 'help' }
  | { kind: 'usage-error'; message: string };

function parse(argv: string[]): Command {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        node: { type: 'string', multiple: true },
        'etcd-member': { type: 'string', multiple: true },
      },
    });
  } catch (error) {
    return { kind: 'usage-error', message: (error as Error).message };
  }
  const { values, positionals } = parsed;
  if (values.help) return { kind: 'help' };
  if (positionals.length > 1) return { kind: 'usage-error', message: `one dir at most, got ${positionals.length}` };
  // The same name twice asks for one pair; nodeCertOptions checks each name.
  const unique = (names: string[] | undefined) => [...new Set(names ?? [])];
  const leaves: DevLeaf[] = [
    ...unique(values.node).map((name) => ({ prefix: `node-${name}`, options: nodeCertOptions({ name }) })),
    ...unique(values['etcd-member']).map((name) => ({ prefix: `etcd-${name}`, options: etcdMemberCertOptions({ name }) })),
  ];
  return { kind: 'write', dir: positionals[0] ?? 'certs', leaves };
}

async function main(argv: string[]): Promise<number> {
  try {
    const command = parse(argv);
    if (command.kind === 'help') {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    if (command.kind === 'usage-error') {
      process.stderr.write(`make-dev-pki: ${command.message}\n${USAGE}\n`);
      return 1;
    }
    const { written } = await writeDevPki(command.dir, { extraLeaves: command.leaves });
    for (const file of written) process.stdout.write(`created ${file}\n`);
    return 0;
  } catch (error) {
    if (!(error instanceof PkiError)) throw error;
    process.stderr.write(`make-dev-pki: ${error.message}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
