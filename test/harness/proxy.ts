// A TCP proxy's core, for tests that cut or delay a connection at a chosen
// moment: the two sockets piped both ways; an error on either ends both.
import type { Socket } from 'node:net';

export function joinSockets(a: Socket, b: Socket) {
  a.pipe(b).pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
}
