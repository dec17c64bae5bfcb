// The benchmark's two services on Node.js ws 8: `node server.js echo|counter PORT`.
// ws://127.0.0.1:PORT/ws/{room} joins room {room} (/ws joins "default"); a room is the set of its
// connections plus, for the counter, its integer.
//   echo:    every message goes back to its sender as a binary message with the same bytes
//   counter: `increment` / `decrement` change the room's integer and broadcast `new value: N` to the room
'use strict';
const { WebSocketServer } = require('ws');

const [service, portArg] = process.argv.slice(2);
const port = Number(portArg);
if (!['echo', 'counter'].includes(service) || !Number.isInteger(port)) {
  console.error('usage: node server.js echo|counter PORT');
  process.exit(2);
}

const rooms = new Map(); // room id -> { clients: Set<WebSocket>, value: number }

function roomOf(url) {
  const path = url.split('?')[0];
  if (path === '/ws') return 'default';
  return path.startsWith('/ws/') ? decodeURIComponent(path.slice(4)) : null;
}

const wss = new WebSocketServer({ host: '127.0.0.1', port, clientTracking: false, perMessageDeflate: false });

wss.on('connection', (ws, req) => {
  const id = roomOf(req.url);
  if (id === null) return ws.close(1008, 'not a room');
  if (service === 'echo') {
    ws.on('message', (data) => ws.send(data, { binary: true }));
    return;
  }
  let room = rooms.get(id);
  if (!room) rooms.set(id, (room = { clients: new Set(), value: 0 }));
  room.clients.add(ws);
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    const text = data.toString();
    if (text === 'increment') room.value += 1;
    else if (text === 'decrement') room.value -= 1;
    else return;
    const reply = `new value: ${room.value}`;
    for (const client of room.clients) client.send(reply);
  });
  ws.on('close', () => {
    room.clients.delete(ws);
    if (room.clients.size === 0) rooms.delete(id);
  });
});

wss.on('listening', () => console.log(`node ws ${service} on ws://127.0.0.1:${port}/ws/{room}`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
