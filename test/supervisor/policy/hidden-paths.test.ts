// What jobs are kept from: the data directory and the key's whole directory,
// as named and as its links lead; a key that cannot be hidden refuses the start.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { hiddenPaths, IsolationConfigError } from '../../../src/supervisor/policy/isolation.js';
import { scratchDir } from '../../helpers/host.js';

/** A key file at dir/name, made with its directory. */
function key(dir: string, name = 'server-key.pem'): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  fs.writeFileSync(file, 'KEY');
  return file;
}

test('the data directory and the directory the key is in', (t) => {
  const root = scratchDir(t, '/tmp');
  t.deepEqual(hiddenPaths(path.join(root, 'data'), [key(path.join(root, 'keys'))]), [path.join(root, 'data'), path.join(root, 'keys')]);
});

test('a key reached through a link: the directory it is named in and the one it lies in (a rotation may re-point the link)', (t) => {
  const root = scratchDir(t, '/tmp');
  const target = key(path.join(root, 'archive'), 'key-v1.pem');
  fs.mkdirSync(path.join(root, 'live'));
  fs.symlinkSync(target, path.join(root, 'live', 'server-key.pem'));
  t.deepEqual(hiddenPaths(path.join(root, 'data'), [path.join(root, 'live', 'server-key.pem')]), [
    path.join(root, 'data'),
    path.join(root, 'archive'),
    path.join(root, 'live'),
  ]);
});

test('a key in a directory that is itself a link (keys/current → v2): the directory above the link, where v3 will go', (t) => {
  const root = scratchDir(t, '/tmp');
  key(path.join(root, 'keys', 'v2'));
  fs.symlinkSync('v2', path.join(root, 'keys', 'current'));
  t.deepEqual(hiddenPaths(path.join(root, 'data'), [path.join(root, 'keys', 'current', 'server-key.pem')]), [
    path.join(root, 'data'),
    path.join(root, 'keys', 'v2'),
    path.join(root, 'keys'),
  ]);
});

test('a data directory not made yet under a linked parent is where the link leads', (t) => {
  const root = scratchDir(t, '/tmp');
  fs.mkdirSync(path.join(root, 'real'));
  fs.symlinkSync('real', path.join(root, 'alias'));
  t.is(hiddenPaths(path.join(root, 'alias', 'data'), [])[0], path.join(root, 'real', 'data'));
});

test('a relative key counts from the working directory', (t) => {
  const root = scratchDir(t, '/tmp');
  key(path.join(root, 'certs'));
  const cwd = process.cwd();
  process.chdir(root);
  t.teardown(() => process.chdir(cwd));
  t.deepEqual(hiddenPaths(path.join(root, 'data'), ['certs/server-key.pem']), [path.join(root, 'data'), path.join(root, 'certs')]);
});

test('a key straight in a top-level directory, or named there through a link, refuses the start', (t) => {
  const root = scratchDir(t, '/tmp');
  const inTmp = path.join('/tmp', `${path.basename(root)}-key.pem`);
  fs.writeFileSync(inTmp, 'KEY');
  t.teardown(() => fs.rmSync(inTmp, { force: true }));
  const expected = (given: string) => ({
    instanceOf: IsolationConfigError,
    message: `--key ${given}: jobs are kept out of the key's whole directory, and /tmp is not one to hide from them; keep the key in a directory of its own (such as /etc/jobworker/)`,
  });
  t.throws(() => hiddenPaths(path.join(root, 'data'), [inTmp]), expected(inTmp));
  // The link is in /tmp; a rotation that re-points it would show the next key.
  const link = path.join('/tmp', `${path.basename(root)}-link.pem`);
  fs.symlinkSync(key(path.join(root, 'keys')), link);
  t.teardown(() => fs.rmSync(link, { force: true }));
  t.throws(() => hiddenPaths(path.join(root, 'data'), [link]), expected(link));
});
