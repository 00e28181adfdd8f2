// A small reader of BTF (the kernel's BPF Type Format, Documentation/bpf/btf.rst): enough of it
// to find where a conn_tuple_t sits in a map's key and where named fields (timestamps, a pid)
// sit in its key or value. Two producers give the same model: the raw blob (kernel backend:
// BPF_BTF_GET_FD_BY_ID + BPF_OBJ_GET_INFO_BY_FD; or a .BTF section) and `bpftool -j btf dump id N`.
// Pure functions over bytes/JSON: no I/O here.

export const BTF_MAGIC = 0xeb9f;

/** BTF_KIND_* numbers (include/uapi/linux/btf.h). */
export const BTF_KINDS = [
  `UNKN`, `INT`, `PTR`, `ARRAY`, `STRUCT`, `UNION`, `ENUM`, `FWD`, `TYPEDEF`, `VOLATILE`, `CONST`,
  `RESTRICT`, `FUNC`, `FUNC_PROTO`, `VAR`, `DATASEC`, `FLOAT`, `DECL_TAG`, `TYPE_TAG`, `ENUM64`,
] as const;
export type BtfKind = (typeof BTF_KINDS)[number];

export interface BtfMember {
  name: string;
  /** Type id of the member. */
  type: number;
  /** Offset from the start of the struct, in bits. */
  bitOffset: number;
  /** Non-zero for a bitfield. */
  bitSize: number;
}

export interface BtfType {
  kind: BtfKind;
  name: string;
  /** STRUCT/UNION/INT/ENUM/DATASEC/FLOAT: byte size. */
  size: number;
  /** PTR/TYPEDEF/CONST/VOLATILE/RESTRICT/TYPE_TAG/VAR/FUNC: the referenced type; ARRAY: element type. */
  type: number;
  /** ARRAY element count. */
  nelems: number;
  /** STRUCT/UNION members; DATASEC variables as members (type = VAR id, bitOffset = 8 * offset). */
  members: ReadonlyArray<BtfMember>;
}

/** Types by id (index 0 is `void`, left undefined). */
export type Btf = ReadonlyArray<BtfType | undefined>;

export class BtfError extends Error {}

const EMPTY: ReadonlyArray<BtfMember> = [];

/**
 * Parses a raw BTF blob (header, type section, string section; little- or big-endian, told by
 * the magic). Throws BtfError naming what is wrong. Split BTF (module/vmlinux bases) is not
 * supported: map BTF loaded with a program is standalone.
 */
export function parseBtf(bytes: Uint8Array): Btf {
  if (bytes.length < 24)
    throw new BtfError(`BTF blob is ${bytes.length} bytes, shorter than its header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let little = true;
  if (view.getUint16(0, true) !== BTF_MAGIC) {
    if (view.getUint16(0, false) !== BTF_MAGIC)
      throw new BtfError(`not BTF: magic is 0x${view.getUint16(0, true).toString(16)}, expected 0x${BTF_MAGIC.toString(16)}`);
    little = false;
  }
  const u32 = (at: number) => view.getUint32(at, little);
  const headerLength = u32(4);
  const typeOff = u32(8);
  const typeLen = u32(12);
  const strOff = u32(16);
  const strLen = u32(20);
  const typeStart = headerLength + typeOff;
  const strStart = headerLength + strOff;
  if (typeStart + typeLen > bytes.length || strStart + strLen > bytes.length)
    throw new BtfError(`BTF sections run past the ${bytes.length}-byte blob`);
  const decoder = new TextDecoder();
  const name = (offset: number): string => {
    if (offset === 0 || offset >= strLen)
      return ``;
    let end = strStart + offset;
    while (end < strStart + strLen && bytes[end] !== 0)
      end++;
    return decoder.decode(bytes.subarray(strStart + offset, end));
  };

  const types: Array<BtfType | undefined> = [undefined];
  let at = typeStart;
  const stop = typeStart + typeLen;
  while (at < stop) {
    if (at + 12 > stop)
      throw new BtfError(`BTF type ${types.length} is cut short`);
    const nameOff = u32(at);
    const info = u32(at + 4);
    const sizeOrType = u32(at + 8);
    at += 12;
    const vlen = info & 0xffff;
    const kindNumber = (info >>> 24) & 0x1f;
    const kindFlag = (info >>> 31) === 1;
    const kind = BTF_KINDS[kindNumber];
    if (kind === undefined)
      throw new BtfError(`BTF type ${types.length} has unknown kind ${kindNumber}`);
    const type: BtfType = {kind, name: name(nameOff), size: 0, type: 0, nelems: 0, members: EMPTY};
    switch (kind) {
      case `INT`:
        type.size = sizeOrType;
        at += 4;
        break;
      case `ARRAY`:
        type.type = u32(at);
        type.nelems = u32(at + 8);
        at += 12;
        break;
      case `STRUCT`:
      case `UNION`: {
        type.size = sizeOrType;
        const members: Array<BtfMember> = [];
        for (let i = 0; i < vlen; i++, at += 12) {
          const offset = u32(at + 8);
          members.push({
            name: name(u32(at)), type: u32(at + 4),
            // kind_flag: bits 0-23 are the offset, 24-31 the bitfield size.
            bitOffset: kindFlag ? offset & 0xffffff : offset,
            bitSize: kindFlag ? offset >>> 24 : 0,
          });
        }
        type.members = members;
        break;
      }
      case `ENUM`:
        type.size = sizeOrType;
        at += 8 * vlen;
        break;
      case `ENUM64`:
        type.size = sizeOrType;
        at += 12 * vlen;
        break;
      case `FUNC_PROTO`:
        type.type = sizeOrType;
        at += 8 * vlen;
        break;
      case `VAR`:
        type.type = sizeOrType;
        at += 4;
        break;
      case `DATASEC`: {
        type.size = sizeOrType;
        const members: Array<BtfMember> = [];
        for (let i = 0; i < vlen; i++, at += 12)
          members.push({name: ``, type: u32(at), bitOffset: 8 * u32(at + 4), bitSize: 0});
        type.members = members;
        break;
      }
      case `DECL_TAG`:
        type.type = sizeOrType;
        at += 4;
        break;
      case `FLOAT`:
        type.size = sizeOrType;
        break;
      default:
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, TYPE_TAG: nothing follows.
        type.type = sizeOrType;
    }
    types.push(type);
  }
  if (at !== stop)
    throw new BtfError(`BTF type section ends inside a type`);
  return types;
}

/** The same model from `bpftool -j btf dump id N` (`{"types":[{id, kind, name, ...}]}`). */
export function btfFromBpftoolJson(json: unknown): Btf {
  const list = (json as {types?: unknown} | null)?.types;
  if (!Array.isArray(list))
    throw new BtfError(`bpftool btf dump: no "types" array`);
  const types: Array<BtfType | undefined> = [undefined];
  for (const raw of list as Array<Record<string, unknown>>) {
    const id = Number(raw?.id);
    const kind = raw?.kind as BtfKind;
    if (!Number.isInteger(id) || id <= 0 || !BTF_KINDS.includes(kind))
      throw new BtfError(`bpftool btf dump: unreadable type ${JSON.stringify(raw).slice(0, 80)}`);
    const name = typeof raw.name === `string` && raw.name !== `(anon)` ? raw.name : ``;
    const type: BtfType = {
      kind, name, size: Number(raw.size ?? 0), type: Number(raw.type_id ?? raw.ret_type_id ?? 0),
      nelems: Number(raw.nr_elems ?? 0), members: EMPTY,
    };
    if (Array.isArray(raw.members)) {
      type.members = (raw.members as Array<Record<string, unknown>>).map(member => ({
        name: typeof member.name === `string` && member.name !== `(anon)` ? member.name : ``,
        type: Number(member.type_id ?? 0), bitOffset: Number(member.bits_offset ?? 0), bitSize: Number(member.bitfield_size ?? 0),
      }));
    } else if (kind === `DATASEC` && Array.isArray(raw.vars)) {
      type.members = (raw.vars as Array<Record<string, unknown>>).map(v => ({
        name: ``, type: Number(v.type_id ?? 0), bitOffset: 8 * Number(v.offset ?? 0), bitSize: 0,
      }));
    }
    types[id] = type;
  }
  return types;
}

const QUALIFIERS: ReadonlySet<BtfKind> = new Set([`TYPEDEF`, `CONST`, `VOLATILE`, `RESTRICT`, `TYPE_TAG`]);

/** Follows typedefs and qualifiers to the type that has a shape; 0 (void) or an unknown id gives undefined. */
export function resolveType(btf: Btf, id: number): BtfType | undefined {
  let type = btf[id];
  for (let hops = 0; type !== undefined && QUALIFIERS.has(type.kind) && hops < 32; hops++)
    type = btf[type.type];
  return type;
}

/** Byte size of a type (structs, ints, pointers as 8, arrays). */
export function sizeOfType(btf: Btf, id: number): number {
  const type = resolveType(btf, id);
  if (type === undefined)
    return 0;
  if (type.kind === `PTR`)
    return 8;
  if (type.kind === `ARRAY`)
    return type.nelems * sizeOfType(btf, type.type);
  return type.size;
}

/** The key and value type ids of a map declared BTF-style (`struct {...} NAME SEC(".maps")`). */
export function mapTypesByName(btf: Btf, kernelName: string): {key: number, value: number, name: string} | null {
  for (const section of btf) {
    if (section?.kind !== `DATASEC` || section.name !== `.maps`)
      continue;
    for (const entry of section.members) {
      const variable = btf[entry.type];
      // The kernel keeps 15 characters of a map's name.
      if (variable?.kind !== `VAR` || variable.name.slice(0, 15) !== kernelName)
        continue;
      const definition = resolveType(btf, variable.type);
      const pointee = (member: string) => {
        const found = definition?.members.find(m => m.name === member);
        const pointer = found === undefined ? undefined : resolveType(btf, found.type);
        return pointer?.kind === `PTR` ? pointer.type : 0;
      };
      return {key: pointee(`key`), value: pointee(`value`), name: variable.name};
    }
  }
  return null;
}

/** conn_tuple_t's members: name, byte offset, byte size. */
const TUPLE_SHAPE: ReadonlyArray<readonly [string, number, number]> = [
  [`saddr_h`, 0, 8], [`saddr_l`, 8, 8], [`daddr_h`, 16, 8], [`daddr_l`, 24, 8],
  [`sport`, 32, 2], [`dport`, 34, 2], [`netns`, 36, 4], [`pid`, 40, 4], [`metadata`, 44, 4],
];

/** True when the type is a conn_tuple_t by shape (member names, offsets, sizes), whatever its name. */
export function isConnTuple(btf: Btf, id: number): boolean {
  const type = resolveType(btf, id);
  if (type?.kind !== `STRUCT` || type.size !== 48 || type.members.length !== TUPLE_SHAPE.length)
    return false;
  return TUPLE_SHAPE.every(([name, offset, size], i) => {
    const member = type.members[i];
    return member.name === name && member.bitOffset === 8 * offset && member.bitSize === 0 && sizeOfType(btf, member.type) === size;
  });
}

/** Byte offset of the first conn_tuple_t in the type (itself: 0; else a member, depth first); null when none. */
export function findConnTuple(btf: Btf, id: number, depth = 0): number | null {
  if (isConnTuple(btf, id))
    return 0;
  const type = resolveType(btf, id);
  if (type?.kind !== `STRUCT` || depth > 8)
    return null;
  for (const member of type.members) {
    if (member.bitSize !== 0 || member.bitOffset % 8 !== 0)
      continue;
    const inner = findConnTuple(btf, member.type, depth + 1);
    if (inner !== null)
      return member.bitOffset / 8 + inner;
  }
  return null;
}

export interface FieldPlace {
  name: string;
  offset: number;
  size: number;
}

/**
 * Where the named fields are in the type: byte offset and size of the first member of each name,
 * searched depth first through nested structs (but not inside a conn_tuple_t, whose `pid` is the
 * tuple's). Bitfields are skipped. Fields not found are absent from the result.
 */
export function findFields(btf: Btf, id: number, names: ReadonlyArray<string>): Array<FieldPlace> {
  const found = new Map<string, FieldPlace>();
  const walk = (typeId: number, base: number, depth: number) => {
    const type = resolveType(btf, typeId);
    if (type?.kind !== `STRUCT` || depth > 8 || isConnTuple(btf, typeId))
      return;
    for (const member of type.members) {
      if (member.bitSize !== 0 || member.bitOffset % 8 !== 0)
        continue;
      const offset = base + member.bitOffset / 8;
      if (member.name !== `` && names.includes(member.name) && !found.has(member.name))
        found.set(member.name, {name: member.name, offset, size: sizeOfType(btf, member.type)});
      walk(member.type, offset, depth + 1);
    }
  };
  walk(id, 0, 0);
  return names.flatMap(name => found.get(name) ?? []);
}
