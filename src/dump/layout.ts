// Which maps to dump and how to read each: the catalogue's layout for the real key size,
// refined by the map's BTF when it has one (exact offsets of the tuple, pid, timestamps), and
// maps the catalogue does not know but whose BTF key type holds a conn_tuple_t (discovered).
import {findConnTuple, findFields, mapTypesByName, resolveType, sizeOfType, type Btf} from '../btf.ts';
import {
  discoveredMap, findCatalogueMap, knownKeySizes, layoutFor, type CatalogueMap, type KeyLayout,
} from '../catalogue.ts';
import type {Logger} from '../context.ts';
import type {ListedMap, MapSource} from './source.ts';

export interface Target {
  listed: ListedMap;
  catalogue: CatalogueMap;
  order: number;
  /** The layout the key is read with (BTF-refined); null when the key size fits none. */
  layout: KeyLayout | null;
  /** Why the keys are not decoded. */
  problem?: string;
  /** Timestamp fields in the value (hex offsets). */
  ages: ReadonlyArray<readonly [string, number]>;
  /** Their names, for BTF-decoded values (system-probe). */
  ageNames: ReadonlyArray<string>;
  /** The layout is assumed (no BTF confirmed it). */
  assumption?: string;
}

const TIMESTAMP_NAMES = [`updated`, `request_started`, `response_last_seen`] as const;

/** The key and value type ids of a listed map in its BTF, when the key type's size is the map's. */
function mapTypes(btf: Btf, listed: ListedMap): {key: number, value: number, name: string} | null {
  const found = listed.btfKeyTypeId
    ? {key: listed.btfKeyTypeId, value: listed.btfValueTypeId ?? 0, name: listed.name}
    : mapTypesByName(btf, listed.name);
  if (found === null || found.key === 0 || sizeOfType(btf, found.key) !== listed.keySize)
    return null;
  // A value type of another size is not this map's (a map listed with a BTF id it does not use).
  if (found.value !== 0 && sizeOfType(btf, found.value) !== listed.valueSize)
    found.value = 0;
  return found;
}

/** The catalogue layout for the listed key size, refined by BTF. */
export function resolveTarget(listed: ListedMap, catalogue: CatalogueMap, order: number, btf: Btf | null): Target {
  const found = layoutFor(catalogue, listed.keySize);
  if (found === null) {
    return {
      listed, catalogue, order, layout: null, ages: [], ageNames: [],
      problem: `key size is ${listed.keySize} bytes, the catalogue expects ${knownKeySizes(catalogue)} for ${catalogue.name}: keys are not decoded`,
    };
  }
  // Every field, in one order, whatever the catalogue entry has: the decoder reads layouts of
  // all 14 maps, and one object shape keeps its optimised code from being thrown away at each map.
  // `satisfies` makes the copy name every field: one added to KeyLayout cannot be left out here.
  const layout: KeyLayout = {
    keyKind: found.keyKind, keySize: found.keySize, tupleOffset: found.tupleOffset, openSize: found.openSize, pidOffset: found.pidOffset,
    fdOffset: found.fdOffset, goroutineOffset: found.goroutineOffset, extra: found.extra, valueTupleOffset: found.valueTupleOffset,
    judgedBy: found.judgedBy, source: found.source, assumption: found.assumption,
  } satisfies Record<keyof KeyLayout, unknown>;
  let assumption = found.assumption;
  const ageNames = catalogue.ages?.names ?? [];
  let ages: ReadonlyArray<readonly [string, number]> = catalogue.ages?.bySize[listed.valueSize] ?? [];
  const types = btf === null ? null : mapTypes(btf, listed);
  if (btf !== null && types !== null) {
    const place = (names: ReadonlyArray<string>) => new Map(findFields(btf, types.key, names).map(field => [field.name, field]));
    switch (layout.keyKind) {
      case `conn_tuple`:
        layout.tupleOffset = findConnTuple(btf, types.key) ?? layout.tupleOffset;
        break;
      case `pid_goroutine`:
      case `pid_fd`: {
        // u32 pid plus the s64 goroutine id or the u32 fd: BTF says where (older Go-TLS keys put the goroutine first).
        const [second, size] = layout.keyKind === `pid_fd` ? [`fd`, 4] : [`goroutine_id`, 8];
        const fields = place([`pid`, second]);
        if (fields.get(`pid`)?.size === 4 && fields.get(second)?.size === size) {
          layout.pidOffset = fields.get(`pid`)!.offset;
          if (layout.keyKind === `pid_fd`)
            layout.fdOffset = fields.get(second)!.offset;
          else
            layout.goroutineOffset = fields.get(second)!.offset;
          assumption = undefined;
        }
        break;
      }
      case `pid_tgid`: {
        if (layout.extra === undefined)
          break;
        const fields = place([`pid_tgid`, `tgid`, ...layout.extra.map(([name]) => name)]);
        const pid = fields.get(`pid_tgid`) ?? fields.get(`tgid`);
        if (pid?.size === 8 && layout.extra.every(([name]) => fields.has(name))) {
          layout.pidOffset = pid.offset;
          layout.extra = layout.extra.map(([name, , size, signed]) => [name, fields.get(name)!.offset, size, signed] as const);
          assumption = undefined;
        }
        break;
      }
      default:
        break;
    }
    if (layout.valueTupleOffset !== undefined && types.value !== 0)
      layout.valueTupleOffset = findConnTuple(btf, types.value) ?? layout.valueTupleOffset;
    if (ageNames.length > 0 && types.value !== 0) {
      const fields = findFields(btf, types.value, ageNames).filter(field => field.size === 8);
      if (fields.length > 0)
        ages = fields.map(field => [field.name, field.offset] as const);
    }
  }
  return {listed, catalogue, order, layout, ages, ageNames, assumption};
}

/** A map the catalogue does not know whose BTF key type holds a conn_tuple_t: its catalogue entry, or null. */
export function discoverMap(listed: ListedMap, btf: Btf): CatalogueMap | null {
  const types = mapTypes(btf, listed);
  if (types === null)
    return null;
  const offset = findConnTuple(btf, types.key);
  if (offset === null)
    return null;
  const keyType = btf[types.key];
  const typeName = keyType?.name || resolveType(btf, types.key)?.name || `anonymous struct`;
  const map = discoveredMap(listed.name, listed.keySize, offset, `BTF id ${listed.btfId}, key type ${typeName}, conn_tuple_t at offset ${offset}`);
  // Whatever the map is, a value field named like USM's timestamps dates its entries.
  if (types.value !== 0 && findFields(btf, types.value, TIMESTAMP_NAMES).some(field => field.size === 8))
    map.ages = {names: TIMESTAMP_NAMES, bySize: {}, source: `BTF`};
  return map;
}

export interface PlanOptions {
  /** Only these map ids (recheck's re-read, --map-id). */
  mapIds?: ReadonlyArray<number>;
  /** Look for maps the catalogue does not know (conn_tuple_t in their BTF key type). */
  discover: boolean;
}

/**
 * The maps to dump: catalogue maps of the selection (every map id of a shared name), then the
 * discovered ones, each with its resolved layout. BTF is read once per BTF object, only for the
 * maps that will be dumped and, for discovery, for maps that share a BTF object with a USM map
 * (the agent's maps of one ELF object share one) or were asked for by id.
 */
export async function planTargets(source: MapSource, listed: ReadonlyArray<ListedMap>, selected: ReadonlyArray<CatalogueMap>, options: PlanOptions, log: Logger): Promise<Array<Target>> {
  const wanted = new Set(selected);
  const ids = options.mapIds ? new Set(options.mapIds) : null;
  const chosen: Array<{listed: ListedMap, catalogue: CatalogueMap, order: number}> = [];
  const unknown: Array<ListedMap> = [];
  for (const map of listed) {
    if (ids !== null && !ids.has(map.id))
      continue;
    const catalogue = map.name ? findCatalogueMap(map.name) : undefined;
    if (catalogue === undefined) {
      unknown.push(map);
      continue;
    }
    if (wanted.has(catalogue))
      chosen.push({listed: map, catalogue, order: selected.indexOf(catalogue)});
  }
  const cache = new Map<number, Promise<Btf | null>>();
  const btfOf = (map: ListedMap): Promise<Btf | null> => {
    if (map.btfId === undefined || source.btf === undefined)
      return Promise.resolve(null);
    let btf = cache.get(map.btfId);
    if (btf === undefined) {
      btf = source.btf(map.btfId).catch(() => null);
      cache.set(map.btfId, btf);
    }
    return btf;
  };
  const targets: Array<Target> = [];
  for (const {listed: map, catalogue, order} of chosen)
    targets.push(resolveTarget(map, catalogue, order, await btfOf(map)));
  if (options.discover && source.btf !== undefined) {
    const usmBtf = new Set(chosen.map(choice => choice.listed.btfId).filter(id => id !== undefined));
    let order = selected.length;
    for (const map of unknown) {
      if (map.btfId === undefined || map.keySize < 48 || !(usmBtf.has(map.btfId) || ids?.has(map.id)))
        continue;
      const btf = await btfOf(map);
      const found = btf === null ? null : discoverMap(map, btf);
      if (found === null)
        continue;
      log.info(`map ${map.id} (${map.name || `no name`}) is not in the catalogue; its BTF key type has a conn_tuple_t at offset ${found.tupleOffset}: judged as discovered`);
      targets.push(resolveTarget(map, found, order++, btf));
    }
  }
  return targets.sort((a, b) => a.order - b.order || a.listed.id - b.listed.id);
}
