// What dump-maps reads maps from. A source lists the maps and opens one map at a time as a
// reader of raw entries (src/dump/entry.ts). Sources: the kernel itself (kernel.ts), bpftool or
// system-probe run live (backend.ts), their outputs saved earlier (offline.ts). Text formats are
// apart from where the text comes from: formats.ts (listings) and tokenizer.ts (dumps).
import {errorMessage} from '../errors.ts';
import type {RunResult} from '../exec.ts';
import type {BackendName} from '../schema.ts';
import type {Btf} from '../btf.ts';
import type {EntrySink} from './entry.ts';
import {DumpTokenizer} from './tokenizer.ts';

export type MapHolder = {pid: number, comm: string};

export interface ListedMap {
  id: number;
  /** Kernel name (≤15 chars); empty when the map has none. */
  name: string;
  /** bpftool's type names (`hash`, `lru_hash`, `percpu_hash`, ...), the others mapped to them. */
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  holders: Array<MapHolder>;
  /** The map's BTF object id, when it has one (bpftool `btf_id`, bpf_map_info.btf_id). */
  btfId?: number;
  /** Key/value type ids in that BTF (bpf_map_info; bpftool does not list them: found by name in `.maps`). */
  btfKeyTypeId?: number;
  btfValueTypeId?: number;
}

export interface MapReader {
  /** Hands the next chunk of entries to the sink; false once there are no more. */
  next(): Promise<boolean>;
  /** Once next() said false: why the entries are incomplete (no failures when they are complete). */
  finish(): Promise<ReadOutcome>;
  /** Releases what the read holds (a child process, file descriptors); safe at any time, twice too. */
  close(): void;
}

export interface ReadOutcome {
  /** Why the entries are incomplete, for people (empty when they are complete). */
  failures: Array<string>;
  /** The map was freed between the listing and its dump: its entries went with it (mapstats.gone). */
  gone: boolean;
}

export interface MapSource {
  backend: BackendName;
  /** What to call it in messages: the binary path, the files read, `bpf()`. */
  label: string;
  list(): Promise<Array<ListedMap>>;
  open(map: ListedMap, sink: EntrySink): MapReader;
  /**
   * The maps open() will be asked for, in this order, once the dump starts: a source may then
   * start reading the next one while the one before is being handed on (the kernel's read-ahead).
   */
  plan?(mapIds: ReadonlyArray<number>): void;
  /** Maps it has no data for (offline sources); live sources always try. */
  has?(mapId: number): boolean;
  /** The BTF object `btfId`, parsed (src/btf.ts); null when it cannot be read. Absent: the source cannot read BTF. */
  btf?(btfId: number): Promise<Btf | null>;
  /** CLOCK_MONOTONIC ns when the dumps were taken, for sources not read now (a capture); null when unknown. */
  readMonotonicNs?(): bigint | null;
  /** Releases what the source holds once every map is read (the kernel's read-ahead worker). */
  close?(): void;
}

/** The output of a child (bpftool, system-probe) or of a saved file. */
export interface DumpStream {
  /** Its bytes, chunk by chunk (a child's stdout, or a file's chunks in a reused buffer: see streamReader). */
  stdout: AsyncIterable<Buffer | string>;
  /** Settles when the producer is finished; never rejects. */
  done: Promise<RunResult>;
  kill(): void;
}

/** Live children still running, killed if the process exits under us (`| head`, SIGPIPE exits). */
const liveStreams = new Set<DumpStream>();
let exitHookInstalled = false;
function track(stream: DumpStream): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once(`exit`, () => {
      for (const live of liveStreams)
        live.kill();
    });
  }
  liveStreams.add(stream);
}

/**
 * A dump printed as text (bpftool's or system-probe's JSON array), read chunk by chunk through
 * the tokenizer. `producer` names the program in messages; `timeoutMs` is what it was given.
 */
export function streamReader(stream: DumpStream, sink: EntrySink, producer: string, mapId: number, timeoutMs: number, maxElementBytes?: number): MapReader {
  let outputError: string | null = null;
  let fatalProblem: string | null = null;
  let readError: string | null = null;
  const tokenizer = new DumpTokenizer({
    entry: entry => sink.entry(entry),
    outputError: message => { outputError = message; },
    problem: (message, fatal) => {
      if (fatal)
        fatalProblem = message;
      else
        sink.skipped(message);
    },
  }, maxElementBytes);
  track(stream);
  // Each chunk is fed before the next is asked for: a source may refill one buffer (offline.ts).
  const chunks = stream.stdout[Symbol.asyncIterator]();
  let ended = false;
  return {
    async next() {
      if (ended)
        return false;
      try {
        const {value, done} = await chunks.next();
        if (!done) {
          tokenizer.feed(typeof value === `string` ? Buffer.from(value) : value as Buffer);
          return true;
        }
        tokenizer.end();
      } catch (err) {
        readError = errorMessage(err);
      }
      ended = true;
      return false;
    },
    async finish() {
      const result = await stream.done;
      const failures: Array<string> = [];
      let gone = false;
      if (result.timedOut)
        failures.push(`${producer} timed out after ${timeoutMs / 1000} s`);
      else if (result.exitCode !== 0)
        failures.push(`${producer} exited with code ${result.exitCode}${result.stderr.trim() ? `: ${result.stderr.trim().slice(-2000)}` : ``}`);
      if (outputError !== null) {
        // bpftool's words for a map freed between the listing and the dump.
        gone = /get map by id.*No such file or directory/i.test(outputError);
        failures.unshift(gone ? mapGone(mapId, outputError) : outputError);
      }
      if (readError !== null)
        failures.push(`reading the dump failed: ${readError}`);
      if (fatalProblem !== null)
        failures.push(fatalProblem);
      return {failures, gone};
    },
    close() {
      stream.kill();
      liveStreams.delete(stream);
    },
  };
}

/** The message for a map freed between the listing and its dump (the fact itself is mapstats.gone). */
export function mapGone(mapId: number, detail: string): string {
  return `map ${mapId} no longer exists (${detail})`;
}
