// jobctl: the jobworker client. Parses the command line, runs one command,
// sets the exit code; everything else lives in one file per command.
import { Builtins, Cli, type CommandClass } from 'clipanion';
import { colorsFor } from '../src/common/terminal.js';
import { CreateCommand } from './create.js';
import { ExitCode } from './errors.js';
import { GetCommand } from './get.js';
import { AttachInputCommand } from './input.js';
import { ListCommand } from './list.js';
import { DrainCommand, NodesCommand, UndrainCommand } from './nodes.js';
import { QuotaCommand } from './quota.js';
import { RunCommand } from './run.js';
import { ScheduleCreateCommand, ScheduleDeleteCommand, ScheduleGetCommand, ScheduleListCommand, SchedulePauseCommand, ScheduleResumeCommand, ScheduleRunNowCommand } from './schedule.js';
import { StopCommand } from './stop.js';
import { StreamCommand } from './stream.js';
import { TopCommand } from './top.js';
import { WaitCommand } from './wait.js';

const COMMANDS: CommandClass[] = [
  CreateCommand,
  RunCommand,
  StreamCommand,
  AttachInputCommand,
  WaitCommand,
  GetCommand,
  ListCommand,
  StopCommand,
  TopCommand,
  QuotaCommand,
  ScheduleCreateCommand,
  ScheduleListCommand,
  ScheduleGetCommand,
  SchedulePauseCommand,
  ScheduleResumeCommand,
  ScheduleDeleteCommand,
  ScheduleRunNowCommand,
  NodesCommand,
  DrainCommand,
  UndrainCommand,
];

const cli = new Cli({ binaryLabel: 'jobworker client', binaryName: 'jobctl', binaryVersion: '0.1.0', enableColors: colorsFor(process.stdout) });
// Only the command named, when one is: clipanion builds one parser of every
// command it knows at each call, which for all of them is ~10 ms of every
// jobctl call (bench scenario 6). `jobctl --help` and unknown commands get all.
const named = COMMANDS.filter((command) => command.paths?.some((path) => path[0] === process.argv[2]));
for (const command of named.length > 0 ? named : COMMANDS) cli.register(command);
cli.register(Builtins.HelpCommand);
cli.register(Builtins.VersionCommand);

/**
 * Parsing is done here rather than in cli.run() because clipanion reports a
 * parse error on stdout, with the usage, and exits 1; jobctl's contract is
 * one line on stderr and exit 2 for any usage error.
 */
async function main(args: string[]): Promise<number> {
  if (args.length === 0) {
    process.stderr.write(cli.usage(null, { colored: colorsFor(process.stderr) }));
    return ExitCode.USAGE;
  }
  let command;
  try {
    command = cli.process(args);
  } catch (err) {
    process.stderr.write(`jobctl: ${usageErrorLine(err, args)}\n`);
    return ExitCode.USAGE;
  }
  return cli.run(command);
}

/** clipanion's parse errors span several lines (candidate usages); the first one says what is wrong. */
function usageErrorLine(err: unknown, args: readonly string[]): string {
  const known = COMMANDS.some((command) => command.paths?.[0]?.[0] === args[0]);
  const first = (err instanceof Error ? err.message : String(err)).split('\n')[0]!.replace(/[.:;]$/, '').trim();
  const what = first.startsWith('Command not found')
    ? known
      ? `invalid arguments for "${args[0]}"`
      : `unknown command ${JSON.stringify(args[0])}`
    : first.charAt(0).toLowerCase() + first.slice(1);
  return `${what} (see "jobctl ${known ? `${args[0]} ` : ''}--help")`;
}

// No top-level await: the bundle is CommonJS, for its code cache (scripts/bundle-cli.mjs).
// A main() that never settled exits 13, as an unsettled top-level await does, not 0.
let settled = false;
process.once('exit', () => {
  if (!settled) process.exitCode ||= 13;
});
void main(process.argv.slice(2)).then((code) => {
  settled = true;
  process.exitCode = code;
});
