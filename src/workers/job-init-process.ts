// job-init started by build/spawn.node (src/native-spawn/spawn.c says why
// not by node:child_process: no fork of the whole server, no copy of its
// page tables) and supervised through a pidfd: its exit is watched on this
// thread's loop, and signals go to the process itself, never to a pid that
// could have been reused.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import { constants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { signalName } from './signal-names.js';

interface SpawnAddon {
  socketPair(): [number, number];
  spawn(file: string, argv: string[], fds: number[], onExit: (code: number | null, signal: number | null, error: string | null) => void): { pid: number; pidfd: number };
  kill(pidfd: number, signal: number): boolean;
}

/** dist/src/workers → the repository's build/, where `npm run build:native` puts it beside job-init. */
const ADDON_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../build/spawn.node');

let addon: SpawnAddon | undefined;
function spawnAddon(): SpawnAddon {
  addon ??= createRequire(import.meta.url)(ADDON_PATH) as SpawnAddon;
  return addon;
}

export interface LeaderExit {
  code: number | null;
  signal: string | null;
  /** Why its end could not be read (never, for a child of ours): then code and signal are null. */
  waitError?: string;
}

/** job-init's two channels are socketpairs: fd 3 its status (and our acknowledgement back), fd 4 the job's environment in and the end report out. */
export class JobInitProcess {
  readonly pid: number;
  /** Our end of job-init's fd 3. */
  readonly status: net.Socket;
  /** Our end of job-init's fd 4. */
  readonly control: net.Socket;
  /** Resolves once job-init has exited and been reaped. */
  readonly exited: Promise<LeaderExit>;
  readonly #pidfd: number;
  #reaped = false;

  /** Throws (an Error with .code: ENOENT, EACCES, E2BIG, EAGAIN, EMFILE, …) when job-init could not be started. */
  constructor(file: string, args: readonly string[]) {
    const native = spawnAddon();
    const opened: number[] = [];
    let resolveExit!: (exit: LeaderExit) => void;
    this.exited = new Promise((resolve) => (resolveExit = resolve));
    try {
      const status = native.socketPair();
      opened.push(...status);
      const control = native.socketPair();
      opened.push(...control);
      const child = native.spawn(file, [file, ...args], [status[1], control[1]], (code, signal, error) => {
        this.#reaped = true;
        resolveExit({ code, signal: signal === null ? null : signalName(signal), ...(error === null ? {} : { waitError: error }) });
      });
      this.pid = child.pid;
      this.#pidfd = child.pidfd;
      // job-init has its copies now; ours of its ends would keep the channels from ever reading EOF.
      fs.closeSync(status[1]);
      fs.closeSync(control[1]);
      opened.length = 0;
      this.status = new net.Socket({ fd: status[0], readable: true, writable: true });
      this.control = new net.Socket({ fd: control[0], readable: true, writable: true });
    } catch (err) {
      for (const fd of opened) fs.closeSync(fd);
      throw err;
    }
  }

  /** Signals job-init until it has been reaped; false once it has exited. Throws only what the kernel refuses (EPERM). */
  kill(signal: NodeJS.Signals): boolean {
    if (this.#reaped) return false;
    return spawnAddon().kill(this.#pidfd, constants.signals[signal]);
  }
}
