import {ExitCode} from './exitCodes.ts';

/** An error whose message is meant for the user, with the exit code it maps to. */
export class ToolError extends Error {
  constructor(message: string, readonly exitCode: ExitCode) {
    super(message);
    this.name = `ToolError`;
  }
}

/** Wrong flags or arguments. */
export class UsageFault extends ToolError {
  constructor(message: string) {
    super(message, ExitCode.Usage);
  }
}

/** No permission, no backend, no maps, unreadable files: not our bug, not the user's typo. */
export class EnvironmentFault extends ToolError {
  constructor(message: string) {
    super(message, ExitCode.Environment);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
