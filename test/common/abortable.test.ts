// Waits that give up (a client gone, a job ended) leave nothing behind on
// what outlives them: no listener on a long-lived signal, no reaction on a
// long-lived promise holding what the wait got.
import { getEventListeners } from 'node:events';
import v8 from 'node:v8';
import vm from 'node:vm';
import test from 'ava';
import { eitherAborted, settledSignal, unlessAborted } from '../../src/common/abortable.js';

test('eitherAborted resolves on either signal and leaves no listener on the other', async (t) => {
  const longLived = new AbortController();
  for (let i = 0; i < 100; i++) {
    const call = new AbortController();
    const waiting = eitherAborted(longLived.signal, call.signal);
    call.abort();
    await waiting;
  }
  t.is(getEventListeners(longLived.signal, 'abort').length, 0);
  const call = new AbortController();
  const waiting = eitherAborted(longLived.signal, call.signal);
  longLived.abort();
  await waiting;
  t.is(getEventListeners(call.signal, 'abort').length, 0);
  await eitherAborted(longLived.signal, undefined); // already aborted: at once
  t.pass();
});

test('settledSignal: one signal per promise, aborted once it settles (either way)', async (t) => {
  let resolve!: () => void;
  const resolves = new Promise<void>((r) => (resolve = r));
  const signal = settledSignal(resolves);
  t.is(settledSignal(resolves), signal);
  t.false(signal.aborted);
  resolve();
  await resolves;
  t.true(signal.aborted);
  const rejects = Promise.reject(new Error('ended'));
  const rejected = settledSignal(rejects);
  await rejects.catch(() => undefined);
  t.true(rejected.aborted);
});

test('settledSignal: a settled promise keeps no signal of its own (a job kept for days after its end holds none)', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  let resolve!: () => void;
  const ended = new Promise<void>((r) => (resolve = r));
  const own = new WeakRef(settledSignal(ended));
  resolve();
  await ended;
  const later = settledSignal(ended);
  t.true(later.aborted);
  // The same one as every other settled promise's.
  const other = Promise.resolve();
  settledSignal(other);
  await other;
  t.is(settledSignal(other), later);
  for (let i = 0; i < 5 && own.deref(); i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  t.is(own.deref(), undefined, 'the signal made before the promise settled is still held');
});

/** WeakRefs to what `count` waits got, each a 1 MiB value raced against `forever` by `wait`; from a frame of its own, which holds none of them once it returns. */
async function valuesGot(count: number, wait: (value: Promise<object>) => Promise<object | null>): Promise<WeakRef<object>[]> {
  const got: WeakRef<object>[] = [];
  for (let i = 0; i < count; i++) got.push(new WeakRef((await wait(Promise.resolve({ payload: new Uint8Array(1024 * 1024) })))!));
  return got;
}

test('racing a long-lived promise through its settledSignal keeps none of the values the waits got', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const forever = new Promise<void>(() => undefined);
  const collected = async (refs: WeakRef<object>[]): Promise<number> => {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    return refs.filter((ref) => ref.deref() === undefined).length;
  };
  t.is(await collected(await valuesGot(20, (value) => unlessAborted(value, settledSignal(forever), null))), 20);
  // Against the leak it replaces: Promise.race with the long-lived promise itself keeps every value.
  t.is(await collected(await valuesGot(5, (value) => Promise.race([value, forever.then(() => null)]))), 0, 'the comparison should keep what it raced');
});
