// The bpftool downloader against a local HTTP server serving fixture archives built here: a tar.gz
// holding a small `bpftool` shell script that answers `version`.
import {createHash} from 'node:crypto';
import {chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {createServer, type Server} from 'node:http';
import type {AddressInfo} from 'node:net';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {PassThrough} from 'node:stream';
import {gzipSync} from 'node:zlib';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {defaultToolContext, type ToolContext} from '../src/context.ts';
import {bpftoolArch, downloadBpftool, extractTarMember, type DownloadOptions} from '../src/dump/download.ts';
import {EnvironmentFault, UsageFault} from '../src/errors.ts';
import {requirePrivileges} from './helpers/privileges.ts';
import {beforeAll} from './helpers/setUp.ts';

const FAKE_BPFTOOL = `#!/bin/sh\ncase "$1" in version) echo "bpftool v7.5.0 (fixture)"; exit 0;; esac\necho "fixture bpftool: only 'version'" >&2\nexit 1\n`;
const ARCHIVE = `bpftool-v7.5.0-amd64.tar.gz`;

interface Member {
  name: string;
  data?: string | Buffer;
  type?: string;
  linkName?: string;
  mode?: number;
}

/** A ustar archive, as GNU tar writes one: headers, data padded to 512, two zero blocks. */
function tarOf(members: ReadonlyArray<Member>): Buffer {
  const blocks: Array<Buffer> = [];
  for (const member of members) {
    const data = Buffer.from(member.data ?? ``);
    const header = Buffer.alloc(512);
    header.write(member.name, 0, 100, `utf8`);
    header.write(`${(member.mode ?? 0o755).toString(8).padStart(7, `0`)}\0`, 100);
    header.write(`0000000\0`, 108);
    header.write(`0000000\0`, 116);
    header.write(`${data.length.toString(8).padStart(11, `0`)}\0`, 124);
    header.write(`00000000000\0`, 136);
    header.write(member.type ?? `0`, 156);
    if (member.linkName)
      header.write(member.linkName, 157, 100);
    header.write(`ustar\0`, 257);
    header.write(`00`, 263);
    header.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of header)
      sum += byte;
    header.write(`${sum.toString(8).padStart(6, `0`)}\0 `, 148);
    blocks.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

const sha256 = (bytes: Buffer) => createHash(`sha256`).update(bytes).digest(`hex`);
const goodArchive = gzipSync(tarOf([{name: `bpftool`, data: FAKE_BPFTOOL}]), {level: 9});
const sumFile = (archive: Buffer, name = ARCHIVE) => `${sha256(archive)}  ${name}\n`;

type Route = {status?: number; body: string | Buffer; cutAfter?: number};

/** An HTTP server on 127.0.0.1 with a route table the tests change; counts requests. */
class FixtureServer {
  routes = new Map<string, Route>();
  requests: Array<string> = [];
  private server: Server = createServer((req, res) => {
    this.requests.push(req.url ?? ``);
    const route = this.routes.get(req.url ?? ``);
    if (!route) {
      res.writeHead(404).end(`not found`);
      return;
    }
    const body = Buffer.from(route.body);
    res.writeHead(route.status ?? 200, {'content-length': String(body.length)});
    if (route.cutAfter !== undefined) {
      // Send part of the body, then drop the connection: a transfer cut short.
      res.write(body.subarray(0, route.cutAfter), () => res.destroy());
      return;
    }
    res.end(body);
  });

  async start(): Promise<string> {
    await new Promise<void>(resolve => this.server.listen(0, `127.0.0.1`, resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/releases`;
  }

  serve(archive: Buffer, sums: string | null = sumFile(archive)): void {
    this.routes.clear();
    this.routes.set(`/releases/v7.5.0/${ARCHIVE}`, {body: archive});
    if (sums !== null)
      this.routes.set(`/releases/v7.5.0/${ARCHIVE}.sha256sum`, {body: sums});
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise(resolve => this.server.close(resolve));
  }
}

const server = new FixtureServer();
let baseUrl = ``;
let scratch = ``;
const stderr = new PassThrough();
let warnings = ``;
stderr.on(`data`, chunk => { warnings += chunk; });

const euid = process.geteuid?.() ?? -1;

function fresh(): {ctx: ToolContext; cacheDir: string; tmpDir: string} {
  const dir = mkdtempSync(join(scratch, `case-`));
  const tmpDir = join(dir, `tmp`);
  mkdirSync(tmpDir);
  return {ctx: defaultToolContext(stderr, {tmpDir, uid: euid}), cacheDir: join(dir, `cache`), tmpDir};
}

async function refused(ctx: ToolContext, options: DownloadOptions, pattern: RegExp, kind: Function = EnvironmentFault): Promise<void> {
  try {
    await downloadBpftool(ctx, {baseUrl, arch: `x64`, timeoutMs: 10_000, ...options});
  } catch (err) {
    assert.instance(err, kind, String(err));
    assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable(`the download was accepted`);
}

beforeAll(test, async () => {
  scratch = mkdtempSync(join(tmpdir(), `usmld-download-`));
  baseUrl = await server.start();
});

test.after(async () => {
  await server.stop();
  rmSync(scratch, {recursive: true, force: true});
});

test(`architecture names map to the release's, others have no build`, () => {
  assert.is(bpftoolArch(`x64`), `amd64`);
  assert.is(bpftoolArch(`arm64`), `arm64`);
  assert.is(bpftoolArch(`ia32`), null);
  assert.is(bpftoolArch(`s390x`), null);
});

test(`a good archive is verified, extracted, cached 0755 in a 0700 directory, and reused without downloading`, async () => {
  server.serve(goodArchive);
  const {ctx, cacheDir, tmpDir} = fresh();
  warnings = ``;
  const path = await downloadBpftool(ctx, {baseUrl, arch: `x64`, cacheDir});
  assert.is(path, join(cacheDir, `bpftool-v7.5.0-amd64`));
  assert.is(statSync(path).mode & 0o7777, 0o755);
  assert.is(statSync(path).uid, euid);
  assert.is(statSync(cacheDir).mode & 0o7777, 0o700);
  const run = await ctx.runner.run(path, [`version`]);
  assert.match(run.stdout, /bpftool v7\.5\.0 \(fixture\)/);
  assert.equal(readdirSync(tmpDir), [], `temporary files left behind`);
  assert.equal(readdirSync(cacheDir).sort(), [`bpftool-v7.5.0-amd64`, `bpftool-v7.5.0-amd64.sha256`]);
  assert.match(warnings, /checked only against the \.sha256sum/);

  const before = server.requests.length;
  assert.is(await downloadBpftool(ctx, {baseUrl, arch: `x64`, cacheDir}), path);
  assert.is(server.requests.length, before, `the cached binary was downloaded again`);
});

test(`the operator's sha256 is checked too: a match passes, a mismatch refuses`, async () => {
  server.serve(goodArchive);
  const {ctx, cacheDir, tmpDir} = fresh();
  await refused(ctx, {cacheDir, sha256: `0`.repeat(64)}, /not the expected 0{64} given with --bpftool-sha256/);
  assert.not.ok(existsSync(join(cacheDir, `bpftool-v7.5.0-amd64`)));
  assert.equal(readdirSync(tmpDir), []);
  warnings = ``;
  const path = await downloadBpftool(ctx, {baseUrl, arch: `x64`, cacheDir, sha256: sha256(goodArchive).toUpperCase()});
  assert.ok(existsSync(path));
  assert.not.match(warnings, /checked only against/);
});

test(`a cached binary from another archive than the operator's hash is replaced by a verified download`, async () => {
  server.serve(goodArchive);
  const {ctx, cacheDir} = fresh();
  const path = await downloadBpftool(ctx, {baseUrl, arch: `x64`, cacheDir});
  writeFileSync(`${path}.sha256`, `${`1`.repeat(64)}\n`);
  const before = server.requests.length;
  await downloadBpftool(ctx, {baseUrl, arch: `x64`, cacheDir, sha256: sha256(goodArchive)});
  assert.ok(server.requests.length > before, `no new download`);
});

test(`an archive that does not match its .sha256sum is refused and nothing is extracted`, async () => {
  const tampered = gzipSync(tarOf([{name: `bpftool`, data: `#!/bin/sh\necho pwned\n`}]));
  server.serve(tampered, sumFile(goodArchive));
  const {ctx, cacheDir, tmpDir} = fresh();
  await refused(ctx, {cacheDir}, /the release's \.sha256sum says/);
  assert.equal(readdirSync(cacheDir), []);
  assert.equal(readdirSync(tmpDir), []);
});

test(`a .sha256sum naming another file, or holding no hash, is refused`, async () => {
  const {ctx, cacheDir} = fresh();
  server.serve(goodArchive, sumFile(goodArchive, `bpftool-v7.5.0-arm64.tar.gz`));
  await refused(ctx, {cacheDir}, /is the checksum of bpftool-v7\.5\.0-arm64\.tar\.gz/);
  server.serve(goodArchive, `<html>rate limited</html>`);
  await refused(ctx, {cacheDir}, /does not hold a SHA-256/);
});

test(`a missing .sha256sum refuses the download`, async () => {
  server.serve(goodArchive, null);
  const {ctx, cacheDir, tmpDir} = fresh();
  await refused(ctx, {cacheDir}, /\.sha256sum: HTTP 404/);
  assert.equal(readdirSync(tmpDir), []);
});

test(`a truncated archive is refused, whether its checksum matches or the transfer is cut`, async () => {
  const {ctx, cacheDir, tmpDir} = fresh();
  const truncated = goodArchive.subarray(0, Math.floor(goodArchive.length / 2));
  server.serve(truncated);
  await refused(ctx, {cacheDir}, /not a complete gzip file/);
  server.serve(goodArchive);
  server.routes.set(`/releases/v7.5.0/${ARCHIVE}`, {body: goodArchive, cutAfter: 40});
  await refused(ctx, {cacheDir}, /cannot download .*(terminated|other side closed|got 40 of)/);
  assert.equal(readdirSync(cacheDir), []);
  assert.equal(readdirSync(tmpDir), []);
});

test(`a server that is down gives a clear error`, async () => {
  const closed = createServer();
  await new Promise<void>(resolve => closed.listen(0, `127.0.0.1`, resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise(resolve => closed.close(resolve));
  const {ctx, cacheDir, tmpDir} = fresh();
  await refused(ctx, {cacheDir, baseUrl: `http://127.0.0.1:${port}/releases`}, /cannot download http:\/\/127\.0\.0\.1:\d+\/releases\/v7\.5\.0\/bpftool-v7\.5\.0-amd64\.tar\.gz: .*ECONNREFUSED/);
  assert.equal(readdirSync(tmpDir), []);
});

test(`archives with a link, a climbing path, two copies or no bpftool are refused`, async () => {
  const {ctx, cacheDir} = fresh();
  const cases: Array<[Array<Member>, RegExp]> = [
    [[{name: `bpftool`, type: `2`, linkName: `/bin/sh`}], /is a link/],
    [[{name: `bpftool`, type: `1`, linkName: `etc/passwd`}], /is a link/],
    [[{name: `../bpftool`, data: FAKE_BPFTOOL}], /climbing path/],
    [[{name: `/usr/sbin/bpftool`, data: FAKE_BPFTOOL}], /absolute or climbing/],
    [[{name: `bpftool`, data: FAKE_BPFTOOL}, {name: `./bpftool`, data: FAKE_BPFTOOL}], /twice/],
    [[{name: `README`, data: `hi`}], /no "bpftool" file/],
    [[{name: `bpftool`, type: `5`}], /not a regular file/],
  ];
  for (const [members, pattern] of cases) {
    server.serve(gzipSync(tarOf(members)));
    await refused(ctx, {cacheDir}, pattern);
  }
  assert.equal(readdirSync(cacheDir), []);
});

test(`the tar reader takes ./bpftool among other members and refuses oversize or corrupt ones`, () => {
  const tar = tarOf([{name: `LICENSE`, data: `x`.repeat(700)}, {name: `./bpftool`, data: FAKE_BPFTOOL}]);
  assert.is(extractTarMember(tar, `bpftool`, 1 << 20, `t`).toString(), FAKE_BPFTOOL);
  assert.throws(() => extractTarMember(tar, `bpftool`, 10, `t`), /more than 10/);
  const corrupt = Buffer.from(tar);
  corrupt[10] ^= 0xff;
  assert.throws(() => extractTarMember(corrupt, `bpftool`, 1 << 20, `t`), /bad checksum/);
  assert.throws(() => extractTarMember(tar.subarray(0, 1024 + 512), `bpftool`, 1 << 20, `t`), /truncated/);
});

test(`a verified binary that does not run "version" here is not cached`, async () => {
  server.serve(gzipSync(tarOf([{name: `bpftool`, data: `#!/bin/sh\nexit 1\n`}])));
  const {ctx, cacheDir, tmpDir} = fresh();
  await refused(ctx, {cacheDir}, /does not run "version" on this host/);
  assert.equal(readdirSync(cacheDir), []);
  assert.equal(readdirSync(tmpDir), []);
});

test(`an unsupported architecture or a non-http base URL is refused before any request`, async () => {
  const {ctx, cacheDir} = fresh();
  const before = server.requests.length;
  await refused(ctx, {cacheDir, arch: `ia32`}, /no bpftool release is built for architecture ia32/);
  await refused(ctx, {cacheDir, baseUrl: `file:///etc`}, /must be http or https/, UsageFault);
  await refused(ctx, {cacheDir, sha256: `abc`}, /64 hex digits/, UsageFault);
  assert.is(server.requests.length, before);
});

// Needs chown: registered as skipped when not root.
(requirePrivileges(`download: foreign-owned cache files`, euid === 0 ? null : `not root (needs chown)`) ? test : test.skip)(`a cached binary writable by others, owned by someone else, or in an open directory is refused`, async () => {
  server.serve(goodArchive);
  const {ctx, cacheDir} = fresh();
  const path = await downloadBpftool(ctx, {baseUrl, arch: `x64`, cacheDir});
  const before = server.requests.length;

  chmodSync(path, 0o777);
  await refused(ctx, {cacheDir}, /refusing cached bpftool .*writable by group or others/);
  chmodSync(path, 0o755);

  chownSync(path, 65534, 65534);
  await refused(ctx, {cacheDir}, /refusing cached bpftool .*owned by uid 65534, not root/);
  chownSync(path, 0, 0);

  chmodSync(cacheDir, 0o777);
  await refused(ctx, {cacheDir}, /refusing bpftool cache .*writable by group or others/);
  chmodSync(cacheDir, 0o700);

  assert.is(server.requests.length, before, `a refused cache must not trigger a download over it`);
  assert.is(await downloadBpftool(ctx, {baseUrl, arch: `x64`, cacheDir}), path);
});

test.run();
