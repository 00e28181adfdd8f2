// dump-maps' output as bytes: entry lines are written straight into a chunk buffer, and each
// chunk, once full, is handed on whole (one write each). A chunk handed on is the taker's until it
// gives it back (recycle): a stream may hold on to what it is given until its reader took it.
// Chunks given back are filled again, so the output needs two or three chunks of memory, not a
// fresh one per chunk left for the garbage collector (which let ~30 MB of them pile up at 1M).
import type {LineOut} from './entryLine.ts';

/** About the size of a chunk: 4 pipe buffers; a few hundred lines. */
export const CHUNK_BYTES = 256 * 1024;
const MAX_SPARE = 4;

export class LineChunks implements LineOut {
  /** The chunk being filled, a view of it, and how far it is filled. */
  buffer: Buffer;
  view: DataView;
  at = 0;
  private full: Array<Buffer> = [];
  private spare: Array<Buffer> = [];

  constructor(private readonly chunkBytes = CHUNK_BYTES) {
    this.buffer = Buffer.allocUnsafe(chunkBytes);
    this.view = viewOf(this.buffer);
  }

  /** Makes room for `bytes` more at `at` (the current chunk goes to the full ones when it has too little). */
  room(bytes: number): void {
    if (this.at + bytes > this.buffer.length) {
      if (this.at > 0)
        this.full.push(this.buffer.subarray(0, this.at));
      this.buffer = bytes <= this.chunkBytes ? this.spare.pop() ?? Buffer.allocUnsafe(this.chunkBytes) : Buffer.allocUnsafe(bytes);
      this.view = viewOf(this.buffer);
      this.at = 0;
    }
  }

  /** Appends text (record lines of the general way) as UTF-8. */
  text(text: string): void {
    this.room(Buffer.byteLength(text));
    this.at += this.buffer.write(text, this.at);
  }

  /** Takes back a chunk the taker is done with (nothing holds its memory any more). */
  recycle(chunk: Buffer): void {
    // Only our own chunk-sized buffers (allocUnsafe of this size is never from the shared pool).
    if (chunk.byteOffset === 0 && chunk.buffer.byteLength === this.chunkBytes && this.spare.length < MAX_SPARE)
      this.spare.push(Buffer.from(chunk.buffer, 0, this.chunkBytes));
  }

  get hasFull(): boolean {
    return this.full.length > 0;
  }

  /** The full chunks, in order; they are the taker's. */
  takeFull(): Array<Buffer> {
    const full = this.full;
    this.full = [];
    return full;
  }

  /** Everything not yet taken (full chunks, then the partly filled one), as the last chunks. */
  takeAll(): Array<Buffer> {
    const all = this.takeFull();
    if (this.at > 0)
      all.push(this.buffer.subarray(0, this.at));
    this.buffer = Buffer.alloc(0);
    this.view = viewOf(this.buffer);
    this.at = 0;
    return all;
  }
}

function viewOf(buffer: Buffer): DataView {
  return new DataView(buffer.buffer, buffer.byteOffset, buffer.length);
}
