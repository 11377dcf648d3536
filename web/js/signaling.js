// The signaling connection: one WebSocket to this page's own server, speaking
// the versioned JSON messages of docs/protocol.md.

export const PROTOCOL_VERSION = 1;

export class Signaling {
  /** @param {{onMessage: (msg: object) => void, onClose: (ev: CloseEvent) => void}} handlers */
  constructor(handlers) {
    this.handlers = handlers;
    this.ws = null;
  }

  /** Opens the socket; resolves when it is open. */
  connect() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    this.ws = ws;
    return new Promise((resolve, reject) => {
      ws.addEventListener('open', () => resolve(), { once: true });
      ws.addEventListener('error', () => reject(new Error('signaling connection failed')), { once: true });
      ws.addEventListener('message', (ev) => {
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (msg && msg.v === PROTOCOL_VERSION && typeof msg.type === 'string') this.handlers.onMessage(msg);
      });
      ws.addEventListener('close', (ev) => {
        if (this.ws === ws) this.handlers.onClose(ev);
      });
    });
  }

  /** Sends one message (the version is added here). */
  send(msg) {
    if (this.ws?.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ v: PROTOCOL_VERSION, ...msg }));
    }
  }

  /** Closes without reporting the close to the handlers. */
  close() {
    const ws = this.ws;
    this.ws = null;
    ws?.close();
  }
}
