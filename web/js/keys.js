// Capabilities kept by this browser: the host key of each meeting it created
// (localStorage: the host may close the tab and come back), moderator keys
// the host handed out, and the seat of the current admission (sessionStorage:
// a reload of this tab skips the lobby, another tab or device does not).
// The server stores only hashes of these.

const HOST = 'aparte.host.';
const MODERATOR = 'aparte.moderator.';
const SEAT = 'aparte.seat.';

export function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** A fresh host key: 32 random bytes, base64url. */
export function newHostKey() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

/**
 * The room id a host key opens: base64url of the first 12 bytes of
 * SHA-256("aparte/v1/room" || 0 || key). The server derives the same
 * (aparte_proto::keys::room_for_host_key) and opens a room only for its key.
 */
export async function roomForHostKey(key) {
  const label = new TextEncoder().encode('aparte/v1/room\0');
  const text = new TextEncoder().encode(key);
  const input = new Uint8Array(label.length + text.length);
  input.set(label);
  input.set(text, label.length);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', input));
  return base64url(digest.slice(0, 12));
}

function read(store, key) {
  try {
    return store.getItem(key);
  } catch {
    return null; // storage disabled: the capability is simply not kept
  }
}

function write(store, key, value) {
  try {
    if (value) store.setItem(key, value);
    else store.removeItem(key);
  } catch {
    // storage disabled
  }
}

export const capabilities = {
  hostKey: (room) => read(localStorage, HOST + room),
  setHostKey: (room, key) => write(localStorage, HOST + room, key),
  moderatorKey: (room) => read(localStorage, MODERATOR + room),
  setModeratorKey: (room, key) => write(localStorage, MODERATOR + room, key),
  seat: (room) => read(sessionStorage, SEAT + room),
  setSeat: (room, seat) => write(sessionStorage, SEAT + room, seat),
};
