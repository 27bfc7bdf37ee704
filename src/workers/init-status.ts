// job-init's status channel (fd 3, a socketpair). job-init writes, in order:
//   ready\t<stdout fd>\t<stderr fd>[\t<stdin fd>]\n   its stdio pipes exist; it waits for one byte back
//   exec\n                               the last word before it execs the command
//   <step>\t<errno>\t<strerror>\t<detail>\n   a step failed (exec too); it exits 127
// The channel is close-on-exec in job-init, so EOF right after "exec" is the
// moment exec succeeded. EOF before "exec" with no failure record is a
// job-init that died during setup (an operator's kill -9, the OOM killer):
// the command never ran.
import { constants } from 'node:os';
import type { Duplex } from 'node:stream';
import type { StartFailureCode } from './protocol.js';

export type StatusEvent =
  /** stdinFd: the write end of the job's stdin pipe, with --stdin pipe; else null. */
  | { kind: 'ready'; stdoutFd: number; stderrFd: number; stdinFd: number | null }
  | { kind: 'failed'; code: StartFailureCode; message: string }
  | { kind: 'execd' }
  /** The channel ended before "exec" without saying why: job-init died. */
  | { kind: 'died' };

/** Reads the channel one line at a time; EOF ends it. */
export class InitStatus {
  readonly #channel: Duplex;
  #buffered = '';
  #ended = false;
  #execing = false;
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
        // Not an event of its own: what counts is what follows, EOF or a failure.
        if (line === 'exec') this.#execing = true;
        else return parseLine(line, command);
        continue;
      }
      if (this.#ended) {
        if (this.#buffered !== '') return parseLine(this.#buffered, command);
        if (this.#error) return { kind: 'failed', code: 'SPAWN_FAILED', message: `job-init status channel: ${this.#error.message}` };
        return this.#execing ? { kind: 'execd' } : { kind: 'died' };
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
  if (fields[0] === 'ready') return { kind: 'ready', stdoutFd: Number(fields[1]), stderrFd: Number(fields[2]), stdinFd: fields[3] === undefined ? null : Number(fields[3]) };
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
