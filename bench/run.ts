// npm run bench [-- --quick] [-- --only N] [-- --json FILE] [-- --cpu-prof DIR]: every scenario
// against the real server in a process of its own; results printed, written
// to bench/results.md (full, unprofiled runs of every scenario only), and with --json to FILE.
import fs from 'node:fs';
import path from 'node:path';
import { Builtins, Cli, Command, Option } from 'clipanion';
import { summarizeProfiles } from './profile.js';
import { failedRow, markdown, machine, writeJson, type Row } from './report.js';
import { cliStartup } from './scenarios/cli-startup.js';
import { fanOut } from './scenarios/fan-out.js';
import { fleet } from './scenarios/fleet.js';
import { ensureCgroupTools, jobStart } from './scenarios/job-start.js';
import { memoryBound } from './scenarios/memory-bound.js';
import { metrics } from './scenarios/metrics.js';
import { mixedLoad } from './scenarios/mixed-load.js';
import { outputThroughput } from './scenarios/output-throughput.js';
import { rpcUnderFlood } from './scenarios/rpc-under-flood.js';
import { scale } from './scenarios/scale.js';
import { REPO, startBenchServer, type BenchServer } from './server.js';

// Run in this order, not by number: the scenarios that write the most output
// come last, so the page cache and writeback they leave behind do not slow
// the timing of the others.
const SCENARIOS: [string, (server: BenchServer, quick: boolean) => Promise<Row[]>][] = [
  ['5. scale', scale],
  ['1. job start', jobStart],
  ['6. CLI start-up', cliStartup],
  ['8. metrics', metrics],
  ['3. RPC latency under output flood', rpcUnderFlood],
  ['9. fleet', fleet],
  ['2. output throughput', outputThroughput],
  ['4. fan-out', fanOut],
  ['7. memory bound', memoryBound],
  ['10. mixed load', mixedLoad],
];

class BenchCommand extends Command {
  static override usage = Command.Usage({ description: 'Benchmark jobworker against baselines measured in the same run (as root)' });

  quick = Option.Boolean('--quick', false, { description: 'Fewer samples: a smoke run of a minute or two' });
  json = Option.String('--json', { description: 'Also write the results as JSON to this file' });
  only = Option.Array('--only', [], { description: 'Run only this scenario, by number (repeatable): --only 5' });
  cpuProf = Option.String('--cpu-prof', {
    description: "Run the server under node --cpu-prof, write its profiles (one per thread) to this directory and print each thread's top functions by self time",
  });

  async execute(): Promise<number> {
    const cpuProf = this.cpuProf && path.resolve(this.cpuProf);
    if (cpuProf && fs.existsSync(cpuProf) && fs.readdirSync(cpuProf).some((name) => name.endsWith('.cpuprofile'))) {
      this.context.stderr.write(`--cpu-prof ${this.cpuProf}: already holds profiles; give an empty or new directory\n`);
      return 2;
    }
    const chosen = this.only.length === 0 ? SCENARIOS : SCENARIOS.filter(([name]) => this.only.includes(name.split('.')[0]!));
    // What a scenario installs, installed before the server starts and anything is timed.
    if (chosen.some(([, scenario]) => scenario === jobStart)) await ensureCgroupTools();
    const server = await startBenchServer({ nodeArgs: cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${cpuProf}`] : [] });
    const rows: Row[] = [];
    let failed = false;
    try {
      for (const [name, scenario] of chosen) {
        this.context.stdout.write(`${name}…\n`);
        try {
          const result = await scenario(server, this.quick);
          rows.push(...result);
          for (const r of result) this.context.stdout.write(`  ${describe(r)}\n`);
        } catch (err) {
          // Reported, not hidden: the other scenarios still run.
          failed = true;
          rows.push(failedRow(name, (err as Error).message));
          this.context.stdout.write(`  FAILED: ${(err as Error).message}\n`);
        }
      }
    } finally {
      await server.stop();
    }
    // Node writes the profiles as the server exits.
    if (cpuProf) {
      for (const profile of summarizeProfiles(cpuProf, 12)) {
        this.context.stdout.write(`profile of the server's ${profile.thread} (${(profile.totalMs / 1000).toFixed(1)} s), self time: ${profile.file}\n`);
        for (const { frame, percent } of profile.top) this.context.stdout.write(`  ${percent.toFixed(1).padStart(5)}%  ${frame}\n`);
      }
    }
    const info = machine(server.cgroupDriver);
    // Only a whole, full run replaces the recorded results.
    if (!this.quick && this.only.length === 0 && !cpuProf) {
      fs.writeFileSync(path.join(REPO, 'bench/results.md'), markdown(rows, info));
      this.context.stdout.write('written: bench/results.md\n');
    }
    if (this.json) writeJson(this.json, info, rows);
    return failed ? 1 : 0;
  }
}

function describe(r: Row): string {
  const kind = r.baseline_kind === 'goal' ? ', a goal' : r.baseline_kind === 'extrapolated' ? ', extrapolated' : '';
  const ratio = r.ratio === null ? '' : ` = ${r.ratio.toFixed(2)}× ${r.baseline_name} (${r.baseline!.toFixed(2)} ${r.unit}${kind})`;
  const goal = r.goal ? ` [goal ${r.goal}: ${r.met ? 'met' : 'NOT met'}]` : '';
  return `${r.name}: ${r.figure.toFixed(2)} ${r.unit}${ratio}${goal}; spread ${r.spread}`;
}

const cli = new Cli({ binaryName: 'npm run bench --', binaryLabel: 'jobworker benchmarks' });
cli.register(BenchCommand);
cli.register(Builtins.HelpCommand);
process.exitCode = await cli.run(process.argv.slice(2));
