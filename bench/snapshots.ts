// Snapshot records (what snapshot-conns and snapshot-pids emit) written straight from the
// synthetic host, for validate's input when the snapshot stages or the fixture tree are not
// there to produce them. Same records, same schema: validate cannot tell the difference.
import {writeFileSync} from 'node:fs';
import {SCHEMA_VERSION, TOOL_NAME, SOCKET_STATES, type NetnsRecord, type ProcessRecord, type SnapshotRecord, type SocketRecord} from '../src/schema.ts';
import {TOOL_VERSION} from '../src/version.ts';
import type {SyntheticWorld} from './synthetic.ts';

/** /proc/net/tcp state numbers (1-based) in SOCKET_STATES order; 7 (CLOSE) is what UDP shows. */
const stateName = (state: number) => SOCKET_STATES[state - 1] ?? `UNKNOWN`;

export function writeSnapshotRecords(world: SyntheticWorld, connsFile: string, pidsFile: string): void {
  const timeMs = Date.UTC(2025, 0, 1);
  const header = (stage: `snapshot-conns` | `snapshot-pids`) => JSON.stringify({
    type: `header`, v: SCHEMA_VERSION, stage, tool: TOOL_NAME, toolVersion: TOOL_VERSION, host: `bench-synthetic`,
    kernel: `6.1.0-bench`, time: new Date(timeMs).toISOString(), timeMs,
  });
  const byNetns = new Map<number, Array<number>>();
  for (const process of world.processes) {
    if (process.netnsInode === null)
      continue;
    const pids = byNetns.get(process.netnsInode) ?? [];
    pids.push(process.pid);
    byNetns.set(process.netnsInode, pids);
  }
  const conns: Array<string> = [header(`snapshot-conns`)];
  for (const netnsInode of world.namespaces) {
    const pids = byNetns.get(netnsInode) ?? [];
    const record: NetnsRecord = {
      type: `netns`, v: SCHEMA_VERSION, netnsInode, foundBy: [`process`], pids: pids.slice(0, 8), paths: [],
      readVia: pids.length > 0 ? `proc-pid:${pids[0]}` : null, complete: true,
    };
    conns.push(JSON.stringify(record));
  }
  for (const socket of world.sockets) {
    const mapped = socket.laddr.startsWith(`::ffff:`);
    const record: SocketRecord = {
      type: `socket`, v: SCHEMA_VERSION, netnsInode: socket.netnsInode, proto: socket.proto,
      family: socket.table.endsWith(`6`) && !mapped ? `v6` : `v4`, listedFamily: socket.table.endsWith(`6`) ? `v6` : `v4`,
      laddr: mapped ? socket.laddr.slice(7) : socket.laddr, lport: socket.lport,
      raddr: mapped ? socket.raddr.slice(7) : socket.raddr, rport: socket.rport,
      state: stateName(socket.state), inode: socket.inode, uid: socket.uid,
    };
    conns.push(JSON.stringify(record));
  }
  const closer = (of: `conns` | `pids`, count: number): SnapshotRecord => ({
    type: `snapshot`, v: SCHEMA_VERSION, of, procRoot: `bench-synthetic`, time: new Date(timeMs).toISOString(), timeMs, count, complete: true,
  });
  conns.push(JSON.stringify(closer(`conns`, world.sockets.length)));
  writeFileSync(connsFile, `${conns.join(`\n`)}\n`);

  const pids: Array<string> = [header(`snapshot-pids`)];
  for (const process of world.processes) {
    const record: ProcessRecord = {
      type: `process`, v: SCHEMA_VERSION, pid: process.pid, tids: process.tids, state: process.state,
      startTime: process.startTime, comm: process.comm, netnsInode: process.netnsInode,
    };
    pids.push(JSON.stringify(record));
  }
  pids.push(JSON.stringify(closer(`pids`, world.processes.length)));
  writeFileSync(pidsFile, `${pids.join(`\n`)}\n`);
}
