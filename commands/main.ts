// Process entry: real stdio, real exit code.
import './earlyStart.ts';
import {installSignalCleanup} from '../src/cleanup.ts';
import {runCli} from './cli.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {endEarlyReadAhead} from '../src/dump/readAhead.ts';
import {exitAtOnce} from '../src/sys/syscalls.ts';

// Temporary files and child process groups are cleaned up on every way out: normal end,
// process.exit, SIGINT/SIGTERM/SIGHUP (src/cleanup.ts).
installSignalCleanup();
let settled = false;

// A reader that closes our stdout early (`| head -1`) is a normal end, not a crash. Any other
// error on stdout is reported by the writer that hit it (exit 3).
process.stdout.on(`error`, err => {
  if ((err as NodeJS.ErrnoException).code === `EPIPE`)
    process.exit(settled ? process.exitCode : ExitCode.Ok);
});
// Messages are best-effort: a reader of stderr that went away must not end the run.
process.stderr.on(`error`, () => {});

// Until the run settles, an exit means it never finished (a wait on something that could not
// happen any more, with nothing left to run): never let that read as success.
process.exitCode = ExitCode.Internal;
process.on(`exit`, () => {
  if (!settled && process.exitCode === ExitCode.Internal) {
    try {
      process.stderr.write(`usm-leak-detector: internal error: the run stopped before it finished (waiting on an event that can no longer come)\n`);
    } catch {
      // stderr gone too
    }
  }
});

const enableColors = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
void runCli(process.argv.slice(2), {stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env}, {enableColors})
  .then(code => {
    settled = true;
    endEarlyReadAhead();
    process.exitCode = code;
    // Everything is written (nothing waits in stdout's or stderr's queue) and the exit actions run
    // on `exit` either way: end now, without the teardown of every handle, worker thread and heap
    // that a drained event loop goes through first (about 8 ms of a scan). A run that loaded the
    // FFI ends through exit_group(2) once the exit actions ran, skipping Node's own teardown too.
    if (process.stdout.writableLength === 0 && process.stderr.writableLength === 0) {
      exitAtOnce(code, () => process.emit(`exit`, code));
      process.exit(code);
    }
  });
