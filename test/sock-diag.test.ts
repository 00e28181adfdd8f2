// Our own namespace's socket tables read through NETLINK_SOCK_DIAG give exactly the records the
// /proc text gives, in the same order, for sockets of every kind (test/helpers/sockDiagProbe.ts
// arranges them in a fresh namespace and snapshots from inside it); a refused netlink socket, or
// one table the kernel will not dump, or a reply that would wait, falls back to the text, table by
// table, with a debug line.
import {execFileSync} from 'node:child_process';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {cleanupNetns, createNetns} from './helpers/netns.ts';
import {netnsUnavailable, requirePrivileges} from './helpers/privileges.ts';
import {beforeAll} from './helpers/setUp.ts';

type Rec = Record<string, any>;
interface Look {
  records: Array<Rec>;
  stderr: string;
}
interface Probe {
  own: number;
  replies: number;
  looks: {diag: Look, refused: Look, unservedUdp: Look, stalled: Look, text: Look};
}

const root = fileURLToPath(new URL(`..`, import.meta.url));
const sockets = (look: Look) => look.records.filter(record => record.type === `socket`);
const netns = (look: Look) => look.records.find(record => record.type === `netns`)!;
const kinds = (records: Array<Rec>) => new Set(records.map(socket => [socket.proto, socket.family, socket.listedFamily, socket.state].join(` `)));

if (requirePrivileges(`NETLINK_SOCK_DIAG against the /proc text (a fresh namespace)`, netnsUnavailable())) {
  let probe: Probe;

  beforeAll(test, () => {
    const ns = createNetns(`diag`);
    const out = execFileSync(`ip`, [`netns`, `exec`, ns.name, join(root, `node_modules/.bin/tsx`), join(root, `test/helpers/sockDiagProbe.ts`)],
      {cwd: root, encoding: `utf8`, maxBuffer: 1 << 26, timeout: 120_000});
    probe = JSON.parse(out) as Probe;
  });

  test.after(() => {
    cleanupNetns();
  });

  test(`the namespace's tables were read through NETLINK_SOCK_DIAG, in dumps of several replies`, () => {
    assert.is(netns(probe.looks.diag).readVia, `sock-diag`);
    assert.is(netns(probe.looks.diag).complete, true);
    assert.not.match(probe.looks.diag.stderr, /NETLINK_SOCK_DIAG|read from \/proc text/);
    assert.ok(probe.replies > 8, `${probe.replies} replies for 4 tables`);
  });

  test(`every kind of socket arranged is there`, () => {
    const listed = sockets(probe.looks.diag);
    const seen = kinds(listed);
    for (const kind of [
      `tcp v4 v4 LISTEN`, `tcp v6 v6 LISTEN`, `tcp v4 v4 ESTABLISHED`, `tcp v6 v6 ESTABLISHED`, `tcp v4 v6 ESTABLISHED`,
      `tcp v4 v4 TIME_WAIT`, `tcp v6 v6 TIME_WAIT`, `tcp v4 v4 FIN_WAIT2`, `tcp v4 v4 CLOSE_WAIT`, `tcp v4 v4 SYN_RECV`,
      `udp v4 v4 CLOSE`, `udp v6 v6 CLOSE`, `udp v4 v4 ESTABLISHED`, `udp v6 v6 ESTABLISHED`, `udp v4 v6 ESTABLISHED`,
    ])
      assert.ok(seen.has(kind), `${kind} is listed (seen: ${[...seen].join(`, `)})`);
    assert.ok(listed.filter(socket => socket.proto === `tcp` && socket.state === `ESTABLISHED`).length > 600, `enough pairs for several replies`);
    // The text gives a request socket its listener's uid; the dump says 0 for it.
    const request = listed.find(socket => socket.state === `SYN_RECV`)!;
    assert.equal([request.uid, request.inode], [65534, 0]);
    assert.ok(listed.some(socket => socket.state === `LISTEN` && socket.uid === 65534 && socket.lport === request.lport), `its listener is uid 65534`);
    assert.ok(listed.filter(socket => socket.state === `TIME_WAIT`).every(socket => socket.inode === 0 && socket.uid === 0));
  });

  test(`the same records, in the same order, as from the /proc text (no FFI)`, () => {
    assert.match(probe.looks.text.stderr, /tables read from \/proc text: no FFI in this look/);
    assert.is(netns(probe.looks.text).readVia, `proc-pid:${netns(probe.looks.text).pids[0]}`);
    assert.equal(sockets(probe.looks.diag), sockets(probe.looks.text));
  });

  test(`socket() refused (EPERM): every table from its text, the same records, said at -vv`, () => {
    for (const table of [`tcp`, `tcp6`, `udp`, `udp6`])
      assert.ok(probe.looks.refused.stderr.includes(`(ours): ${table} not read through NETLINK_SOCK_DIAG (socket(AF_NETLINK, NETLINK_SOCK_DIAG): EPERM): read from its /proc text`), probe.looks.refused.stderr);
    assert.equal(netns(probe.looks.refused).complete, true);
    assert.equal(sockets(probe.looks.refused), sockets(probe.looks.text));
  });

  test(`one dump refused by the kernel (ENOENT): that table alone from its text, the same records`, () => {
    const said = probe.looks.unservedUdp.stderr.split(`\n`).filter(line => line.includes(`NETLINK_SOCK_DIAG`));
    assert.equal(said.map(line => line.replace(/^.*\(ours\): /, ``)), [`udp not read through NETLINK_SOCK_DIAG (SOCK_DIAG_BY_FAMILY: ENOENT): read from its /proc text`]);
    assert.equal(sockets(probe.looks.unservedUdp), sockets(probe.looks.text));
  });

  test(`a reply that would wait in the middle of a dump (EAGAIN): that table and the ones after it from their text, the same records`, () => {
    const said = probe.looks.stalled.stderr.split(`\n`).filter(line => line.includes(`NETLINK_SOCK_DIAG`)).map(line => line.replace(/^.*\(ours\): /, ``));
    assert.equal(said, [
      `tcp not read through NETLINK_SOCK_DIAG (recv: EAGAIN): read from its /proc text`,
      ...[`tcp6`, `udp`, `udp6`].map(table => `${table} not read through NETLINK_SOCK_DIAG (not tried after tcp failed (recv: EAGAIN)): read from its /proc text`),
    ]);
    assert.equal(sockets(probe.looks.stalled), sockets(probe.looks.text));
  });
}

test.run();
