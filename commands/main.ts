// Process entry: real stdio, real exit code.
import {runCli} from './cli.ts';

// A reader that closes our stdout early (`| head -1`) is a normal end, not a crash.
process.stdout.on(`error`, err => {
  if ((err as NodeJS.ErrnoException).code === `EPIPE`)
    process.exit(process.exitCode ?? 0);
});

const enableColors = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
void runCli(process.argv.slice(2), {stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env}, {enableColors})
  .then(code => {
    process.exitCode = code;
  });
