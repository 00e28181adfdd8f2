// Runs measured commands as child processes under GNU time, which reads the child's rusage
// from wait4: CPU time (user + system, the child's own children included) and peak RSS.
// A pipeline runs each process under its own `time` (peak RSS per process) inside one outer
// `time` (CPU of the whole pipeline).
import {spawn} from 'node:child_process';
import {existsSync, readFileSync, rmSync} from 'node:fs';
import {join} from 'node:path';

export const GNU_TIME = `/usr/bin/time`;

export function haveGnuTime(): boolean {
  return existsSync(GNU_TIME);
}

export interface ProcessUsage {
  /** Wall seconds as `time` saw them (10 ms resolution). */
  wallS: number;
  /** User + system CPU seconds, children included. */
  cpuS: number;
  /** Peak resident set, MiB. */
  rssMiB: number;
  exitCode: number;
}

export interface Measurement {
  /** Wall seconds of the whole command line, from our own clock. */
  wallS: number;
  /** CPU seconds of everything the command line ran. */
  cpuS: number;
  /** The largest peak RSS of any one process, MiB. */
  rssMiB: number;
  /** One per measured process, in pipeline order. */
  processes: Array<ProcessUsage>;
}

export interface Step {
  /** argv of one process. */
  argv: ReadonlyArray<string>;
  /** Exit codes that count as success (report exits 1 when it found leaks). */
  okCodes?: ReadonlyArray<number>;
}

export interface RunSpec {
  steps: ReadonlyArray<Step>;
  stdin?: string;
  /** Defaults to /dev/null. */
  stdout?: string;
  /** A shell loop rather than a pipeline: steps run one after another (bpftool over each map). */
  sequential?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Where the `time` output files go. */
  scratch: string;
  timeoutMs?: number;
}

const live = new Set<ReturnType<typeof spawn>>();
/** Set once the run is being stopped: no new child is started after that. */
let stopping = false;

/**
 * Kills measured children still running (on Ctrl-C, or when the harness fails). Resolves once
 * they are gone (at most ~2 s), so their files can then be removed for good.
 */
export function killMeasured(): Promise<void> {
  stopping = true;
  const waits: Array<Promise<void>> = [];
  for (const child of live) {
    waits.push(new Promise(resolve => child.once(`close`, () => resolve())));
    try {
      process.kill(-child.pid!, `SIGKILL`);
    } catch {
      // already gone
    }
  }
  return Promise.race([Promise.all(waits).then(() => {}), new Promise<void>(resolve => setTimeout(resolve, 2000).unref())]);
}

let serial = 0;

export async function measure(spec: RunSpec): Promise<Measurement> {
  if (stopping)
    throw new Error(`the benchmark is stopping`);
  const tag = `${process.pid}-${++serial}`;
  const outer = join(spec.scratch, `time-${tag}-all`);
  const inner = spec.steps.map((_, i) => join(spec.scratch, `time-${tag}-${i}`));
  const timed = spec.steps.map((step, i) => `${GNU_TIME} -f '%e %U %S %M %x' -o ${quote(inner[i])} ${step.argv.map(quote).join(` `)}`);
  const stdin = spec.stdin ? ` < ${quote(spec.stdin)}` : ` < /dev/null`;
  const stdout = ` > ${quote(spec.stdout ?? `/dev/null`)}`;
  // The first process reads stdin, the last one writes stdout; a sequential run discards each output.
  const body = spec.sequential
    ? timed.map(line => `${line}${stdin} > /dev/null`).join(`; `)
    : timed.map((line, i) => `${line}${i === 0 ? stdin : ``}${i === timed.length - 1 ? stdout : ``}`).join(` | `);
  const script = `${GNU_TIME} -f '%e %U %S %M %x' -o ${quote(outer)} bash -c ${quote(body)}`;
  const started = process.hrtime.bigint();
  const {code, stderr} = await runShell(script, spec.env, spec.timeoutMs ?? 30 * 60_000);
  const wallS = Number(process.hrtime.bigint() - started) / 1e9;
  try {
    const processes = inner.map(file => parseTime(file));
    const all = parseTime(outer);
    processes.forEach((usage, i) => {
      const ok = spec.steps[i].okCodes ?? [0];
      if (!ok.includes(usage.exitCode))
        throw new Error(`${spec.steps[i].argv.join(` `)} exited ${usage.exitCode}: ${tail(stderr)}`);
    });
    // Every process exited as expected; a failing redirection or shell would still show here.
    if (code !== 0 && code !== processes[processes.length - 1].exitCode)
      throw new Error(`command line failed (${code}): ${tail(stderr)}`);
    return {wallS, cpuS: all.cpuS, rssMiB: Math.max(...processes.map(p => p.rssMiB)), processes};
  } finally {
    for (const file of [outer, ...inner])
      rmSync(file, {force: true});
  }
}

function parseTime(file: string): ProcessUsage {
  if (!existsSync(file))
    throw new Error(`no timing written to ${file}`);
  // With a non-zero exit, GNU time writes "Command exited with non-zero status N" first.
  const lines = readFileSync(file, `utf8`).trim().split(`\n`);
  const fields = lines[lines.length - 1].trim().split(/\s+/).map(Number);
  if (fields.length < 5 || fields.some(Number.isNaN))
    throw new Error(`cannot read GNU time output: ${lines.join(` / `)}`);
  const [wallS, user, sys, rssKiB, exitCode] = fields;
  return {wallS, cpuS: user + sys, rssMiB: rssKiB / 1024, exitCode};
}

function runShell(script: string, env: NodeJS.ProcessEnv | undefined, timeoutMs: number): Promise<{code: number, stderr: string}> {
  return new Promise((resolve, reject) => {
    // Own process group, so a timeout or Ctrl-C kills the whole pipeline.
    const child = spawn(`bash`, [`-c`, script], {stdio: [`ignore`, `ignore`, `pipe`], env: env ?? process.env, detached: true});
    live.add(child);
    let stderr = ``;
    child.stderr!.setEncoding(`utf8`);
    child.stderr!.on(`data`, (chunk: string) => {
      stderr = (stderr + chunk).slice(-8192);
    });
    const timer = setTimeout(() => {
      stderr += `\n(timed out after ${timeoutMs / 1000} s)`;
      try {
        process.kill(-child.pid!, `SIGKILL`);
      } catch {
        // gone
      }
    }, timeoutMs);
    child.on(`error`, reject);
    child.on(`close`, code => {
      clearTimeout(timer);
      live.delete(child);
      resolve({code: code ?? 128, stderr});
    });
  });
}

function tail(text: string): string {
  const trimmed = text.trim();
  return trimmed.length > 600 ? `...${trimmed.slice(-600)}` : trimmed || `(no stderr)`;
}

export function quote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export function median(values: ReadonlyArray<number>): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export interface Summary {
  runs: number;
  wallS: number;
  cpuS: number;
  rssMiB: number;
  /** Per process of a pipeline: median CPU and peak RSS. */
  processes: Array<{cpuS: number, rssMiB: number}>;
}

/** Medians of wall and CPU over the runs; RSS is the largest seen (peak is what matters). */
export function summarise(runs: ReadonlyArray<Measurement>): Summary {
  return {
    runs: runs.length,
    wallS: median(runs.map(run => run.wallS)),
    cpuS: median(runs.map(run => run.cpuS)),
    rssMiB: Math.max(...runs.map(run => run.rssMiB)),
    processes: runs[0].processes.map((_, i) => ({
      cpuS: median(runs.map(run => run.processes[i].cpuS)),
      rssMiB: Math.max(...runs.map(run => run.processes[i].rssMiB)),
    })),
  };
}
