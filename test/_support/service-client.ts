// A client of the simulated guest's service, run inside the client's network namespace by the network
// test: connects to HOST:PORT every few ms (each attempt bounded), and on SIGTERM prints one JSON line
// with every attempt: when (ms since the epoch), and the step count the guest answered, or null.
//
//   node service-client.js HOST PORT

import { connect } from 'node:net';

const [host, portText] = process.argv.slice(2);
const port = Number(portText);
const ATTEMPT_TIMEOUT_MS = 50;
const INTERVAL_MS = 5;
const attempts: { at: number; steps: number | null }[] = [];

function attempt(): Promise<number | null> {
  return new Promise((resolve) => {
    let text = '';
    const socket = connect({ host, port });
    const timer = setTimeout(() => socket.destroy(), ATTEMPT_TIMEOUT_MS);
    socket.on('data', (d) => { text += d.toString(); });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(/^\d+\n$/.test(text) ? Number(text.trim()) : null);
    });
  });
}

let stopping = false;
process.on('SIGTERM', () => { stopping = true; });
while (!stopping) {
  const at = Date.now();
  attempts.push({ at, steps: await attempt() });
  await new Promise((r) => setTimeout(r, INTERVAL_MS));
}
process.stdout.write(`${JSON.stringify(attempts)}\n`);
