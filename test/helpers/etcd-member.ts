// One etcd process of a test cluster: start, signals, restart on the same data
// dir and ports. The cluster (etcd-cluster.ts) decides the flags and waits for
// health; this module only owns the process and its log.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

export interface EtcdMember {
  /** etcd's --name: m1, m2, ... */
  name: string;
  /** https://127.0.0.1:PORT, for clients. */
  clientUrl: string;
  /** https://127.0.0.1:PORT, for the other members. */
  peerUrl: string;
  /** The current process's pid (a restart changes it); 0 before the first start. */
  readonly pid: number;
  /** True from start until the process has exited. */
  readonly running: boolean;
  /** Between pause() and resume(). */
  readonly paused: boolean;
  /** Sends the signal (default SIGKILL) and resolves once the process has exited; at once if it is not running. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same data dir and ports; resolves once it answers a status request (it may not have a leader yet). */
  restart(): Promise<void>;
  /** SIGSTOP: it stops answering, like a hung machine, without its sockets closing. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** Its stdout and stderr since the first start (etcd logs to stderr). */
  log(): Promise<string>;
}

export interface MemberSpec {
  name: string;
  clientUrl: string;
  peerUrl: string;
  /** etcd's arguments, the same for every start. */
  args: string[];
  /** Appended to by every start. */
  logFile: string;
  /** Env for etcd. */
  env: NodeJS.ProcessEnv;
  /** Called by restart() to wait until the member serves again. */
  waitServing(member: EtcdProcess): Promise<void>;
}

export class EtcdProcess implements EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  #spec: MemberSpec;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #running = false;
  #paused = false;

  constructor(spec: MemberSpec) {
    this.#spec = spec;
    this.name = spec.name;
    this.clientUrl = spec.clientUrl;
    this.peerUrl = spec.peerUrl;
  }

  get pid(): number {
    return this.#child?.pid ?? 0;
  }

  get running(): boolean {
    return this.#running;
  }

  get paused(): boolean {
    return this.#running && this.#paused;
  }

  /** Spawns etcd without waiting for it to serve. */
  start(): void {
    if (this.#running) throw new Error(`etcd member ${this.name} is already running (pid ${this.pid})`);
    // setpriv --pdeathsig: should the test process die without its teardown
    // (a crash, a timeout that kills the worker), the kernel kills etcd too
    // instead of leaving it on its ports.
    const log = openSync(this.#spec.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'etcd', ...this.#spec.args], {
        stdio: ['ignore', log, log],
        env: this.#spec.env,
      });
    } finally {
      // The child has its own copy of the descriptor once spawn returns.
      closeSync(log);
    }
    this.#child = child;
    this.#running = true;
    this.#paused = false;
    this.#exited = new Promise<void>((resolve) => {
      const done = () => {
        this.#running = false;
        resolve();
      };
      child.once('exit', done);
      // A failed spawn (no setpriv) emits 'error' and may never emit 'exit'.
      child.once('error', done);
    });
  }

  /** Resolves when the current process has exited, whatever ended it. */
  exited(): Promise<void> {
    return this.#exited;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.#running) return;
    this.#child!.kill(signal);
    // A stopped process keeps any signal but SIGKILL pending until it runs again.
    if (this.#paused && signal !== 'SIGKILL') this.resume();
    await this.#exited;
  }

  async restart(): Promise<void> {
    this.start();
    await this.#spec.waitServing(this);
  }

  pause(): void {
    this.#signal('SIGSTOP');
    this.#paused = true;
  }

  resume(): void {
    this.#signal('SIGCONT');
    this.#paused = false;
  }

  log(): Promise<string> {
    return readFile(this.#spec.logFile, 'utf8').catch((error: NodeJS.ErrnoException) => `(no log: ${error.message})`);
  }

  #signal(signal: NodeJS.Signals): void {
    if (!this.#running) throw new Error(`etcd member ${this.name} is not running`);
    this.#child!.kill(signal);
  }
}
