// The formats of bpftool's and system-probe's outputs, apart from where the text comes from: map
// listings parsed here, map dumps by the tokenizer (tokenizer.ts). Live sources (backend.ts) and
// saved files (offline.ts) both use them.
import {EnvironmentFault, errorMessage} from '../errors.ts';
import type {ListedMap} from './source.ts';

/** `bpftool -j map show`: a JSON array (or one object for `show id N`, or `{"error":...}`). */
export function parseBpftoolList(text: string, source: string): Array<ListedMap> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new EnvironmentFault(`${source}: map list is not JSON (${errorMessage(err)})`);
  }
  if (value !== null && typeof value === `object` && !Array.isArray(value)) {
    const object = value as {error?: unknown};
    if (typeof object.error === `string`)
      throw new EnvironmentFault(`${source}: ${object.error}`);
    value = [value];
  }
  if (!Array.isArray(value))
    throw new EnvironmentFault(`${source}: map list is not a JSON array`);
  const maps: Array<ListedMap> = [];
  for (const item of value as Array<Record<string, unknown>>) {
    if (item === null || typeof item !== `object` || !Number.isInteger(item.id))
      continue;
    const pids = Array.isArray(item.pids) ? item.pids as Array<{pid?: unknown, comm?: unknown}> : [];
    maps.push({
      id: item.id as number,
      name: typeof item.name === `string` ? item.name : ``,
      type: typeof item.type === `string` ? item.type : String(item.type),
      keySize: Number(item.bytes_key ?? 0),
      valueSize: Number(item.bytes_value ?? 0),
      maxEntries: Number(item.max_entries ?? 0),
      holders: pids
        .filter(holder => Number.isInteger(holder?.pid))
        .map(holder => ({pid: holder.pid as number, comm: typeof holder.comm === `string` ? holder.comm : ``})),
      ...(Number.isInteger(item.btf_id) && (item.btf_id as number) > 0 ? {btfId: item.btf_id as number} : {}),
    });
  }
  return maps;
}

/** cilium/ebpf MapType.String() → bpftool's names, so both backends describe maps alike. */
const SYSTEM_PROBE_TYPES: Record<string, string> = {
  Hash: `hash`, Array: `array`, ProgramArray: `prog_array`, PerfEventArray: `perf_event_array`,
  PerCPUHash: `percpu_hash`, PerCPUArray: `percpu_array`, StackTrace: `stack_trace`,
  CGroupArray: `cgroup_array`, LRUHash: `lru_hash`, LRUCPUHash: `lru_percpu_hash`,
  LPMTrie: `lpm_trie`, ArrayOfMaps: `array_of_maps`, HashOfMaps: `hash_of_maps`, DevMap: `devmap`,
  SockMap: `sockmap`, CPUMap: `cpumap`, XSKMap: `xskmap`, SockHash: `sockhash`, Queue: `queue`,
  Stack: `stack`, RingBuf: `ringbuf`,
};

const SP_HEAD = /^(\d+): (\S+)\s+name (\S*)\s+flags 0x[0-9a-fA-F]+\s*$/;
const SP_SIZES = /^\s+key (\d+)B\s+value (\d+)B\s+max_entries (\d+)\s*$/;

/** `system-probe ebpf map list`: two text lines per map. */
export function parseSystemProbeList(text: string, source: string): Array<ListedMap> {
  const maps: Array<ListedMap> = [];
  let current: ListedMap | null = null;
  for (const line of text.split(`\n`)) {
    const head = SP_HEAD.exec(line);
    if (head) {
      current = {
        id: Number(head[1]), name: head[3], type: SYSTEM_PROBE_TYPES[head[2]] ?? head[2].toLowerCase(),
        keySize: 0, valueSize: 0, maxEntries: 0, holders: [],
      };
      maps.push(current);
      continue;
    }
    const sizes = SP_SIZES.exec(line);
    if (sizes && current) {
      current.keySize = Number(sizes[1]);
      current.valueSize = Number(sizes[2]);
      current.maxEntries = Number(sizes[3]);
      current = null;
    }
  }
  if (maps.length === 0 && text.trim() !== ``)
    throw new EnvironmentFault(`${source}: not a system-probe map list: ${text.trim().slice(0, 80)}`);
  return maps;
}

