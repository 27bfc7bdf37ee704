// job-init's control channel (fd 4, a socketpair), read back: after taking
// the job's environment in, it carries one line out when the job runs under
// job-init's init (PID namespace):
//   exit\t<wait status>\n   the init has reaped the job; the raw waitpid status
// It is the job's own end, whatever happens to job-init's processes after
// that: a stop's SIGKILL may take the outside process before it could end
// as the job did. The channel closes once the init (and everything else of
// job-init's) is gone.
import type { Duplex } from 'node:stream';
import { signalName } from './signal-names.js';

export class EndReport {
  /** The job's wait status, once the init reported it. */
  status: number | null = null;
  /** Resolves when the channel has closed: nothing more will come. */
  readonly ended: Promise<void>;
  #buffered = '';

  constructor(channel: Duplex) {
    channel.setEncoding('latin1');
    channel.on('data', (text: string) => {
      // One short line from a trusted helper: bounded all the same.
      if (this.#buffered.length < 256) this.#buffered += text;
      const match = /^exit\t(-?\d+)\n/.exec(this.#buffered);
      if (match) this.status = Number(match[1]);
    });
    this.ended = new Promise((resolve) => {
      channel.once('close', () => resolve());
      // An EOF needs a reader that drains: 'close' follows 'end' only once the readable side has been consumed.
      channel.resume();
    });
  }
}

/** A raw wait status as Node reports a child's end: an exit code, or the name of the signal that killed it. */
export function describeWaitStatus(status: number): { exitCode: number | null; signal: string | null } {
  const signal = status & 0x7f;
  if (signal === 0) return { exitCode: (status >> 8) & 0xff, signal: null };
  return { exitCode: null, signal: signalName(signal) };
}
