// job-init reports a failure before exec as one line on its status pipe:
//   <step>\t<errno>\t<strerror>\t<detail>\n
// and success as EOF with no bytes (the pipe is CLOEXEC and closes on exec).

/** Turns a status record into the message a client sees. */
export function parseStatusRecord(record: Buffer, command: string): string {
  // The detail is the client's command or a path: it may hold tabs itself.
  const [step, , reason, ...rest] = record.toString('utf8').replace(/\n$/, '').split('\t');
  const detail = rest.join('\t');
  switch (step) {
    case 'exec':
      return `exec ${JSON.stringify(command)}: ${reason}`;
    case 'cgroup':
      return `join cgroup ${detail}: ${reason}`;
    case undefined:
    case '':
      return 'job-init failed without saying why';
    default:
      return `job-init ${step}${detail ? ` ${detail}` : ''}: ${reason}`;
  }
}
