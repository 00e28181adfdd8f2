// `dump-maps --from FILE|DIR`: the raw outputs of bpftool or system-probe saved on another host
// (by hand or by the capture script), read back so they give the same records as a live run.
//
// Accepted, in any mix, each --from repeatable:
//   - a capture directory (DIR/maps/... , see README "Capture directory"), or a maps directory:
//     list.json (`bpftool -j map show`) or list.txt (`system-probe ebpf map list`), plus
//     dump-<ID>.json per map (`bpftool -j map dump id <ID>` or `system-probe ebpf map dump id <ID>`);
//   - single files: a listing (recognised by content), or a dump named dump-<ID>.json (the name
//     carries the map id, which a dump's content does not).
import {readdir, stat} from 'node:fs/promises';
import {basename, join} from 'node:path';
import {Readable} from 'node:stream';
import {UnreadableFile, readBoundedText, readPrefix, regularFileChunks} from '../boundedRead.ts';
import type {ToolContext} from '../context.ts';
import {EnvironmentFault, ToolError, UsageFault, errorMessage} from '../errors.ts';
import type {RunResult} from '../exec.ts';
import type {BackendName} from '../schema.ts';
import {firstCaptureClock} from '../capture/monotonic.ts';
import {btfFromBpftoolJson} from '../btf.ts';
import {parseLossless, toJsonText} from './json.ts';
import {parseBpftoolList, parseSystemProbeList} from './formats.ts';
import {streamReader, type DumpStream, type ListedMap, type MapSource} from './source.ts';

const DUMP_NAME = /^dump-(\d+)(?:\.json)?$/;
/** `bpftool -j btf dump id <ID>`, saved by the capture script beside the dumps. */
const BTF_NAME = /^btf-(\d+)\.json$/;

interface OfflineFiles {
  lists: Array<{path: string, maps: Array<ListedMap>, backend: BackendName}>;
  /** Map id → a dump file, or the dump's text cut out of a multi-map file. */
  dumps: Map<number, string | {text: string}>;
  /** BTF object id → its saved `bpftool -j btf dump` file. */
  btfs: Map<number, string>;
  backend: BackendName | null;
  /** A capture taken with -m/-i (its meta/selection): only these maps were dumped on purpose. */
  selection: {names: Set<string> | null, ids: Set<number> | null} | null;
}

export async function offlineSource(ctx: ToolContext, inputs: ReadonlyArray<string>, stdin?: Readable): Promise<MapSource> {
  const files: OfflineFiles = {lists: [], dumps: new Map(), btfs: new Map(), backend: null, selection: null};
  if (inputs.filter(input => input === `-`).length > 1)
    throw new UsageFault(`--from - is given more than once: standard input can be read only once`);
  for (const input of inputs) {
    if (input === `-`)
      await addStdin(files, stdin ?? Readable.from([]));
    else
      await addInput(ctx, files, input);
  }
  if (files.lists.length === 0)
    throw new EnvironmentFault(`--from ${inputs.join(` `)}: no map listing found (expected maps/list.json from \`bpftool -j map show\` or maps/list.txt from \`system-probe ebpf map list\`)`);
  const backend = files.backend ?? files.lists[0].backend;
  // When the capture dumped the maps, in the clock map values are dated with (entry ages).
  const clock = await firstCaptureClock(inputs);
  if (clock !== null)
    ctx.log.info(`--from: maps dumped at CLOCK_MONOTONIC ${clock.ns} ns (read from ${clock.source === `timer_list` ? `/proc/timer_list` : `/proc/uptime`})`);
  return {
    backend,
    label: inputs.join(`, `),
    readMonotonicNs: () => clock?.ns ?? null,
    async list() {
      const byId = new Map<number, ListedMap>();
      for (const list of files.lists) {
        for (const map of list.maps)
          byId.set(map.id, map);
      }
      for (const id of files.dumps.keys()) {
        if (!byId.has(id))
          ctx.log.warn(`${files.dumps.get(id)}: map ${id} is not in the saved listing; its dump is ignored`);
      }
      const selection = files.selection;
      if (selection === null)
        return [...byId.values()];
      // Maps the capture left out on purpose are not failed dumps: they are not part of it.
      return [...byId.values()].filter(map => (selection.names === null || selection.names.has(map.name))
        && (selection.ids === null || selection.ids.has(map.id)));
    },
    has(mapId) {
      return files.dumps.has(mapId);
    },
    async btf(btfId) {
      const path = files.btfs.get(btfId);
      if (path === undefined)
        return null;
      try {
        return btfFromBpftoolJson(JSON.parse(await readBoundedText(path)));
      } catch (err) {
        ctx.log.warn(`--from ${path}: not a BTF dump (${errorMessage(err)}): maps of BTF ${btfId} are read by the catalogue's layouts`);
        return null;
      }
    },
    open(map, sink) {
      return streamReader(savedDump(files, map.id), sink, backend, map.id, 0, ctx.maxLineLength);
    },
  };
}

function savedDump(files: OfflineFiles, mapId: number): DumpStream {
  const dump = files.dumps.get(mapId)!;
      if (typeof dump !== `string`) {
        const stdout = Readable.from([Buffer.from(dump.text)]);
        return {stdout, done: Promise.resolve({exitCode: 0, stdout: ``, stderr: ``, timedOut: false}), kill: () => stdout.destroy()};
      }
      const path = dump;
      let settle: (result: RunResult) => void = () => {};
      const done = new Promise<RunResult>(resolve => {
        settle = resolve;
      });
      // The reader feeds each chunk to the tokenizer before it asks for the next: one buffer serves.
      const chunks = regularFileChunks(path);
      const stdout = (async function* () {
        try {
          yield* chunks;
          settle({exitCode: 0, stdout: ``, stderr: ``, timedOut: false});
        } catch (err) {
          settle({exitCode: 1, stdout: ``, stderr: `${path}: ${err instanceof UnreadableFile ? err.reason : errorMessage(err)}`, timedOut: false});
        }
      })();
      const kill = () => {
        settle({exitCode: null, stdout: ``, stderr: ``, timedOut: false});
        void stdout.return(undefined);
        void chunks.return(undefined);
      };
      return {stdout, done, kill};
}

async function addInput(ctx: ToolContext, files: OfflineFiles, input: string): Promise<void> {
  let info;
  try {
    info = await stat(input);
  } catch (err) {
    throw new EnvironmentFault(`--from ${input}: ${(err as NodeJS.ErrnoException).code === `ENOENT` ? `no such file or directory` : errorMessage(err)}`);
  }
  if (!info.isDirectory()) {
    await addFile(ctx, files, input, false);
    return;
  }
  let mapsDir = input;
  try {
    if ((await stat(join(input, `maps`))).isDirectory())
      mapsDir = join(input, `maps`);
  } catch {
    // a maps directory itself
  }
  try {
    const backend = (await readBoundedText(join(input, `meta`, `backend`), `utf8`, 4096)).trim();
    if (backend === `bpftool` || backend === `system-probe`)
      files.backend = backend;
  } catch {
    // no meta: tell the backend from the listing's format
  }
  files.selection = await readSelection(join(input, `meta`, `selection`)) ?? files.selection;
  const names = (await readdir(mapsDir)).sort();
  for (const name of names) {
    const path = join(mapsDir, name);
    if (name === `list.json` || name === `list.txt` || DUMP_NAME.test(name) || /\.json$/.test(name))
      await addFile(ctx, files, path, true);
    else
      ctx.log.debug(`--from: ignoring ${path}`);
  }
}

/** meta/selection of a capture taken with -m/-i (`names N1 N2 ...`, `ids 1,2,...`); null without one. */
async function readSelection(path: string): Promise<OfflineFiles[`selection`]> {
  let text: string;
  try {
    text = await readBoundedText(path, `utf8`, 65536);
  } catch {
    return null;
  }
  const selection: NonNullable<OfflineFiles[`selection`]> = {names: null, ids: null};
  for (const line of text.split(`\n`)) {
    const [what, ...rest] = line.trim().split(/[\s,]+/);
    if (what === `names`)
      selection.names = new Set(rest.filter(name => name !== ``));
    else if (what === `ids`)
      selection.ids = new Set(rest.filter(id => /^\d+$/.test(id)).map(Number));
  }
  return selection.names === null && selection.ids === null ? null : selection;
}

/** Classifies one file by name, then by content. In a directory, files of no known kind are skipped. */
async function addFile(ctx: ToolContext, files: OfflineFiles, path: string, inDirectory: boolean): Promise<void> {
  try {
    await classifyFile(ctx, files, path, inDirectory);
  } catch (err) {
    if (err instanceof UnreadableFile)
      throw new EnvironmentFault(`--from ${path}: ${err.reason}`);
    if (!(err instanceof ToolError) && typeof (err as NodeJS.ErrnoException)?.code === `string`)
      throw new EnvironmentFault(`--from ${path}: cannot read: ${(err as NodeJS.ErrnoException).code}`);
    throw err;
  }
}

async function classifyFile(ctx: ToolContext, files: OfflineFiles, path: string, inDirectory: boolean): Promise<void> {
  const dumpName = DUMP_NAME.exec(basename(path));
  if (dumpName) {
    files.dumps.set(Number(dumpName[1]), path);
    return;
  }
  const btfName = BTF_NAME.exec(basename(path));
  if (btfName) {
    files.btfs.set(Number(btfName[1]), path);
    return;
  }
  const head = await readHead(path);
  const trimmed = head.trimStart();
  if (basename(path) === `list.txt` || /^\d+: \S+\s+name /.test(trimmed)) {
    const maps = parseSystemProbeList(await readBoundedText(path), path);
    files.lists.push({path, maps, backend: `system-probe`});
    return;
  }
  if (basename(path) === `list.json` || /^\[\s*(?:\]|\{\s*"id"\s*:\s*\d+\s*,\s*"type")/.test(trimmed) || /"bytes_key"/.test(head)) {
    if (/"elements"\s*:/.test(head)) {
      await addMultiMapDump(files, path);
      return;
    }
    const maps = parseBpftoolList(await readBoundedText(path), path);
    files.lists.push({path, maps, backend: `bpftool`});
    return;
  }
  if (/^(?:\[|null)/.test(trimmed)) {
    const message = `${path}: looks like a map dump, but its map id is unknown: name the file dump-<ID>.json`;
    if (!inDirectory)
      throw new UsageFault(`--from ${message}`);
    ctx.log.warn(`--from ${message}; skipped`);
    return;
  }
  if (!inDirectory)
    throw new UsageFault(`--from ${path}: neither a map listing nor a map dump`);
  ctx.log.debug(`--from: ignoring ${path}`);
}

async function readHead(path: string): Promise<string> {
  return (await readPrefix(path, 4096)).toString(`utf8`);
}

/**
 * `--from -`: a listing (`bpftool -j map show`, `system-probe ebpf map list`) or a multi-map dump
 * (`bpftool -j map dump name X`) on standard input, told apart by content. Read whole, like those
 * files (a single map's dump does not say its map id: give it as a file named dump-<ID>.json).
 */
async function addStdin(files: OfflineFiles, stdin: Readable): Promise<void> {
  const chunks: Array<Buffer> = [];
  for await (const chunk of stdin)
    chunks.push(typeof chunk === `string` ? Buffer.from(chunk) : chunk);
  const text = Buffer.concat(chunks).toString(`utf8`);
  const trimmed = text.trimStart();
  if (/^\d+: \S+\s+name /.test(trimmed)) {
    files.lists.push({path: `stdin`, maps: parseSystemProbeList(text, `stdin`), backend: `system-probe`});
    return;
  }
  if (/^\[\s*(?:\]|\{)/.test(trimmed)) {
    if (/"elements"\s*:/.test(text.slice(0, 4096))) {
      addMultiMapText(files, `stdin`, text);
      return;
    }
    files.lists.push({path: `stdin`, maps: parseBpftoolList(text, `stdin`), backend: `bpftool`});
    return;
  }
  throw new UsageFault(`--from -: standard input is neither a map listing (bpftool -j map show, system-probe ebpf map list) nor a multi-map dump (bpftool -j map dump name NAME); give a single map's dump as a file named dump-<ID>.json`);
}

/**
 * `bpftool -j map dump name X` when several maps share the name: `[{"id":N,...,"elements":[...]}]`.
 * The only dump format that names its map id in its content. Read whole (offline files only).
 */
async function addMultiMapDump(files: OfflineFiles, path: string): Promise<void> {
  addMultiMapText(files, path, await readBoundedText(path));
}

function addMultiMapText(files: OfflineFiles, path: string, text: string): void {
  let value;
  try {
    value = parseLossless(text);
  } catch (err) {
    throw new EnvironmentFault(`--from ${path}: not JSON (${errorMessage(err)})`);
  }
  if (!Array.isArray(value))
    throw new UsageFault(`--from ${path}: expected an array of maps with "id" and "elements"`);
  for (const map of value) {
    if (map === null || typeof map !== `object` || Array.isArray(map) || typeof map.id !== `number` || !Array.isArray(map.elements))
      throw new UsageFault(`--from ${path}: expected an array of maps with "id" and "elements"`);
    files.dumps.set(map.id, {text: toJsonText(map.elements)});
  }
}
