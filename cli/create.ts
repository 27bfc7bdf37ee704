// jobctl create: start a job and print its id.
import { Command, Option } from 'clipanion';
import * as t from 'typanion';
import { Network, type CreateJobReq } from '../src/gen/jobworker/v1/jobworker.js';
import type { JobworkerClient } from '../src/client/client.js';
import { jobJson, toJsonLine } from './format.js';
import { dependenciesOf, isCpuPercent, isDependencies, isEnvEntries, isIoBps, isJobName, isLabelEntries, isMemoryMb, isPids, isTimeout, JobctlCommand, labelsOf } from './options.js';

/**
 * What create and run share: the limits and the command. The command is a
 * positional followed by Option.Proxy(), so parsing of jobctl's own options
 * stops at the command's name: in `jobctl create ls -la /tmp`, `-la` belongs
 * to ls. A leading `--` is accepted as well (`jobctl create -- ls -la`).
 */
export abstract class StartCommand extends JobctlCommand {
  maxCpu = Option.String('--max-cpu', {
    description: 'CPU limit in percent of one core (1 to cores×100; server default 100)',
    validator: isCpuPercent,
  });
  maxMemory = Option.String('--max-memory', {
    description: 'Memory limit in MiB (4 to the host memory; server default 512); swap is off',
    validator: isMemoryMb,
  });
  maxIobps = Option.String('--max-iobps', {
    description: 'Read and write limit in bytes/s on every block device (default 0: unlimited)',
    validator: isIoBps,
  });
  maxPids = Option.String('--max-pids', {
    description: 'Most processes and threads at once (server default 4096; 0: unlimited)',
    validator: isPids,
  });
  env = Option.Array('--env', [], {
    description: "NAME=value in the job's environment (repeatable); jobs get PATH, HOME, USER, LOGNAME, LANG and JOBWORKER_JOB_ID, never the server's environment",
    validator: isEnvEntries,
  });
  workdir = Option.String('--workdir', { description: 'Directory the command starts in, an absolute path (default /)' });
  user = Option.String('--user', {
    description: "Run as NAME, UID, NAME:GROUP or UID:GID (server default nobody; root only where the server allows it)",
  });
  network = Option.String('--network', {
    description: "none: only lo (the server's usual default); host: the host's network, where the server allows it",
    validator: t.isEnum(['none', 'host'] as const),
  });
  pidNs = Option.Boolean('--pid-ns', {
    description: "--no-pid-ns: see the host's processes instead of only the job's own (where the server allows it)",
  });
  mountNs = Option.Boolean('--mount-ns', {
    description: "--no-mount-ns: the host's /tmp, /proc and /dev instead of private ones, and nothing of the server's hidden (where the server allows it)",
  });
  rootfs = Option.String('--rootfs', { description: "Run in this directory of the server as the root filesystem (pivot_root; needs the mount namespace); it and every directory above it must be root's and writable by root alone (above it, a sticky directory such as /tmp will do)" });
  node = Option.String('--node', { description: 'Fleet only: run on this node (jobctl nodes lists them)' });
  constraint = Option.Array('--constraint', [], {
    description: 'Fleet only: run on a node whose labels include key=value (repeatable; every one must match)',
    validator: isLabelEntries,
  });
  name = Option.String('--name', {
    description: 'Name the job: unique among jobs that have not ended; every command that takes a job id takes it too',
    validator: isJobName,
  });
  label = Option.Array('--label', [], { description: 'Label the job key=value (repeatable; list --label and stop --label select by them)', validator: isLabelEntries });
  timeout = Option.String('--timeout', {
    description: "Stop the job this long after it starts (30s, 10m, 2h): it then ends TIMED_OUT (default: the server's --default-timeout, none unless set)",
    validator: isTimeout,
  });
  after = Option.Array('--after', [], {
    description: 'Wait until this job (ID|NAME) has ended, :ok (the default) COMPLETED with exit 0 or :any end at all (repeatable, at most 32). Meanwhile the job is WAITING, with no cgroup and no process; a dependency that ends short of its condition ends it FAILED without running. In a fleet the dependency may run on any node, and the job is placed once its dependencies have ended',
    validator: isDependencies,
  });
  stdin = Option.Boolean('-i,--stdin', false, { description: "Keep the job's stdin open for input (run: jobctl's own stdin; create: jobctl attach-input); otherwise it reads /dev/null" });
  command = Option.String({ name: 'command' });
  args = Option.Proxy({ name: 'args' });

  protected createRequest(): CreateJobReq {
    return {
      command: this.command,
      args: this.args,
      // 0 asks for the server's default (proto3 scalars have no "unset").
      limits: { maxCpuPercent: this.maxCpu ?? 0, maxMemoryMb: this.maxMemory ?? 0, maxIoBps: this.maxIobps ?? 0, maxPids: this.maxPids },
      env: this.env,
      workdir: this.workdir ?? '',
      isolation: {
        pidNamespace: this.pidNs,
        mountNamespace: this.mountNs,
        network: this.network === undefined ? Network.NETWORK_UNSPECIFIED : this.network === 'host' ? Network.NETWORK_HOST : Network.NETWORK_NONE,
        user: this.user ?? '',
        rootfs: this.rootfs ?? '',
      },
      node: this.node ?? '',
      constraints: labelsOf(this.constraint),
      stdin: this.stdin,
      timeoutMs: this.timeout,
      name: this.name ?? '',
      labels: labelsOf(this.label),
      after: dependenciesOf(this.after),
    };
  }
}

export class CreateCommand extends StartCommand {
  static override paths = [['create']];
  static override usage = Command.Usage({
    description: 'Start a job and print its id',
    details: `
      Runs \`<command>\` with its arguments on the server, in a cgroup of its own with the limits given, and prints the job's id alone on one line as soon as the command has started (with \`--json\`: the job).

      jobctl's options go before the command: everything after the command's name is passed to it unchanged. \`--\` before the command is accepted too.

      A command that cannot be started (not found, not executable) is an error, and no job is recorded.

      With the server's usual defaults the job runs as nobody, sees only its own processes, has a private /tmp and no network but lo; \`--user\`, \`--network\`, \`--no-pid-ns\`, \`--no-mount-ns\` and \`--rootfs\` ask for something else, and the server refuses what its flags do not allow.
    `,
    examples: [
      ['List /usr', '$0 create ls -la /usr'],
      ['Run a shell command with half a CPU core and 64 MiB', "$0 create --max-cpu 50 --max-memory 64 -- sh -c 'echo hi; sleep 10'"],
      ['Keep the id for later', 'id=$($0 create sleep 100)'],
      ['As user build, with a variable, in its home', '$0 create --user build --env CI=1 --workdir /home/build make'],
      ['In a fleet, on a node labelled disk=ssd', '$0 create --constraint disk=ssd -- fio job.fio'],
      ['Named, labelled, stopped after 10 minutes', '$0 create --name web-1 --label env=load --timeout 10m -- ./serve'],
      ['Input later: create with stdin open, then write to it', 'id=$($0 create -i wc -l); seq 1000 | $0 attach-input "$id"'],
      ['Deploy once the build has completed (it prints its id now; the job waits)', '$0 create --after build --name deploy -- ./deploy.sh'],
    ],
  });

  protected override async run(client: JobworkerClient): Promise<number> {
    const job = await client.create(this.createRequest());
    this.context.stdout.write(this.json ? toJsonLine(jobJson(job)) : `${job.id}\n`);
    return 0;
  }
}
