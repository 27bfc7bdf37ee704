// job-init's status channel (fd 3, a socketpair). job-init writes, in order:
//   ready\t<stdout fd>\t<stderr fd>\n   its stdio pipes exist; it waits for one byte back
//   <step>\t<errno>\t<strerror>\t<detail>\n   a step failed; it exits 127
// and success is EOF with no failure record: the channel is close-on-exec in
// job-init, so it closes at the moment exec succeeds. (A job-init killed
// after our acknowledgement also closes it with no record: that looks like
// an exec, and the job then ends at once, killed by its signal.)
import { constants } from 'node:os';
import type { Duplex } from 'node:stream';
import type { StartFailureCode } from './protocol.js';

export type StatusEvent =
  | { kind: 'ready'; stdoutFd: number; stderrFd: number }
  | { kind: 'failed'; code: StartFailureCode; message: string }
  | { kind: 'execd' };

/** Reads the channel one line at a time; EOF ends it. */
export class InitStatus {
  readonly #channel: Duplex;
  #buffered = '';
  #ended = false;
  #error: Error | undefined;
  #waiting: (() => void) | undefined;

  constructor(channel: Duplex) {
    this.#channel = channel;
    channel.setEncoding('utf8');
    channel.on('data', (text: string) => {
      this.#buffered += text;
      this.#waiting?.();
    });
    const end = (): void => {
      this.#ended = true;
      this.#waiting?.();
    };
    channel.once('end', end);
    channel.once('close', end);
    channel.once('error', (err: Error) => {
      // A reset (job-init died with our acknowledgement unread) is no exec.
      this.#error ??= err;
      end();
    });
  }

  async next(command: string): Promise<StatusEvent> {
    for (;;) {
      const newline = this.#buffered.indexOf('\n');
      if (newline >= 0) {
        const line = this.#buffered.slice(0, newline);
        this.#buffered = this.#buffered.slice(newline + 1);
        return parseLine(line, command);
      }
      if (this.#ended) {
        if (this.#buffered !== '') return parseLine(this.#buffered, command);
        if (this.#error) return { kind: 'failed', code: 'SPAWN_FAILED', message: `job-init status channel: ${this.#error.message}` };
        return { kind: 'execd' };
      }
      await new Promise<void>((resolve) => (this.#waiting = resolve));
      this.#waiting = undefined;
    }
  }

  /** Lets job-init go on to exec. */
  acknowledge(): void {
    this.#channel.write('k');
  }
}

const { ENOENT } = constants.errno;

/** job-init's steps (its header lists them all) that set up the job's isolation: what fails there is the host's or the request's doing. */
const ISOLATION_STEPS = new Set(['namespaces', 'mount', 'hide', 'rootfs', 'network', 'hostname', 'capabilities', 'user', 'workdir']);

function parseLine(line: string, command: string): StatusEvent {
  const fields = line.split('\t');
  if (fields[0] === 'ready') return { kind: 'ready', stdoutFd: Number(fields[1]), stderrFd: Number(fields[2]) };
  // The detail is the client's command or a path: it may hold tabs itself.
  const [step, errno, reason, ...rest] = fields;
  const detail = rest.join('\t');
  switch (step) {
    case 'exec':
      return { kind: 'failed', code: 'EXEC_FAILED', message: `exec ${JSON.stringify(command)}: ${reason}` };
    case 'cgroup':
      return { kind: 'failed', code: 'CGROUP_SETUP_FAILED', message: `join cgroup ${detail}: ${reason}` };
    case 'cgroupcheck':
      return { kind: 'failed', code: 'CGROUP_SETUP_FAILED', message: `job-init is not in cgroup ${detail} after joining it (/proc/self/cgroup ${errno === String(ENOENT) ? 'has no such hierarchy' : 'names another group'})` };
    default:
      return { kind: 'failed', code: ISOLATION_STEPS.has(step!) ? 'ISOLATION_FAILED' : 'SPAWN_FAILED', message: `job-init ${step}${detail ? ` ${detail}` : ''}: ${reason}` };
  }
}
