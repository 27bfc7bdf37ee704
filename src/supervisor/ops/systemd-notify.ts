// Readiness for systemd's Type=notify: when systemd started the server it
// sets NOTIFY_SOCKET, and the server says READY=1 once it serves and
// STOPPING=1 as it shuts down. The notify socket takes datagrams on a Unix
// socket, which Node cannot send; systemd's own systemd-notify sends them,
// with --pid naming the server (as root it may), so the message is the main
// process's even though a child sent it and has exited by the time systemd
// reads it.
import { execa } from 'execa';
import type { Logger } from 'pino';

export class SystemdNotifier {
  #last: Promise<boolean> = Promise.resolve(true);

  constructor(
    readonly logger: Logger,
    readonly socket = process.env.NOTIFY_SOCKET,
  ) {}

  /**
   * Sends `fields` (READY=1, STATUS=…) after anything sent before. Resolves
   * true once sent (or when systemd did not ask), false when it could not
   * be (logged).
   */
  notify(fields: Record<string, string>): Promise<boolean> {
    if (!this.socket) return Promise.resolve(true);
    const assignments = Object.entries(fields).map(([key, value]) => `${key}=${value}`);
    this.#last = this.#last.then(async () => {
      const result = await execa('systemd-notify', [`--pid=${process.pid}`, ...assignments], {
        env: { NOTIFY_SOCKET: this.socket },
        extendEnv: true,
        reject: false,
        timeout: 10_000,
      });
      if (result.failed) {
        this.logger.error({ fields: assignments, err: result.shortMessage }, 'could not notify systemd (NOTIFY_SOCKET is set, systemd-notify failed)');
      }
      return !result.failed;
    });
    return this.#last;
  }
}
