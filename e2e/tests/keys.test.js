// The page's key derivation (web/js/keys.js) run in Node's WebCrypto: the room
// id of a host key matches the server's (the same vector is pinned in
// crates/aparte-proto/src/keys.rs), and new host keys are 32 random bytes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { base64url, newHostKey, roomForHostKey } from '../../web/js/keys.js';

test('the page derives the room id the server derives', async () => {
  assert.equal(await roomForHostKey('QXBhcnRlVGVzdEhvc3RLZXkwMDAwMDAwMDAwMDAwMDAwMDAwMA'), 'XS__WYBNMxm4IlZp');
  assert.equal(base64url(new Uint8Array(32).fill(0xfb)), '-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s');
  const a = newHostKey();
  assert.match(a, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(a, newHostKey());
  assert.match(await roomForHostKey(a), /^[A-Za-z0-9_-]{16}$/);
});
