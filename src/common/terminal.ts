/**
 * Whether help text may be coloured: clipanion 3.2.1 asks the terminal type,
 * not the stream, so it would colour text piped into a file.
 */
export function colorsFor(stream: NodeJS.WriteStream): boolean {
  return process.env.FORCE_COLOR !== undefined ? process.env.FORCE_COLOR !== '0' : stream.isTTY === true && process.env.NO_COLOR === undefined;
}
