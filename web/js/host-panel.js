// The side panels of the meeting that concern people rather than media: who
// waits in the lobby (hosts and moderators only), who is in the meeting and
// with which role, and the room's settings. Names are rendered with
// textContent only; every action is a labelled button.

import { t } from './i18n.js';

const $ = (id) => document.getElementById(id);

function button(label, aria, onclick, kind = '') {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.setAttribute('aria-label', aria);
  if (kind) b.className = kind;
  b.onclick = onclick;
  return b;
}

/** Replaces a list's items, keeping keyboard focus on the same control. */
function replaceKeepingFocus(list, items) {
  const focused = list.contains(document.activeElement) ? document.activeElement.getAttribute('aria-label') : null;
  list.replaceChildren(...items);
  if (focused) {
    const again = [...list.querySelectorAll('button')].find((b) => b.getAttribute('aria-label') === focused);
    (again ?? list.closest('section')?.querySelector('h2'))?.focus();
  }
}

export class HostPanel {
  /**
   * @param {{send: (msg: object) => void, nameOf: (id: number) => string,
   *          askEnd: () => void, setPasscode: (text: string) => void}} actions
   */
  constructor(actions) {
    this.actions = actions;
    this.me = null;
    this.role = 'guest';
    /** Participant id → role, for everyone in the meeting (me included). */
    this.roles = new Map();
    /** Waiting participant id → {name: string|null, readable: boolean}. */
    this.lobby = new Map();
    this.room = { lobby: true, locked: false, passcode: false, persistent: false };
    $('admit-all').onclick = () => {
      for (const id of this.lobby.keys()) this.actions.send({ type: 'admit', peer: id });
    };
    $('set-lobby').onchange = (ev) => this.actions.send({ type: 'update_room', lobby: ev.target.checked });
    $('set-locked').onchange = (ev) => this.actions.send({ type: 'update_room', locked: ev.target.checked });
    $('set-persistent').onchange = (ev) => this.actions.send({ type: 'update_room', persistent: ev.target.checked });
    $('passcode-form').onsubmit = (ev) => {
      ev.preventDefault();
      const text = $('new-passcode').value;
      if (!text) return;
      this.actions.setPasscode(text);
      $('new-passcode').value = '';
    };
    $('clear-passcode').onclick = () => this.actions.setPasscode('');
    $('mute-all').onclick = () => this.actions.send({ type: 'mute' });
    $('end-meeting').onclick = () => this.actions.askEnd();
  }

  reset() {
    this.me = null;
    this.role = 'guest';
    this.roles.clear();
    this.lobby.clear();
    this.render();
  }

  get moderates() {
    return this.role === 'host' || this.role === 'moderator';
  }

  welcome(msg) {
    this.me = msg.you;
    this.role = msg.role;
    this.room = msg.room;
    this.roles.set(msg.you, msg.role);
    for (const p of msg.peers) this.roles.set(p.id, p.role);
    this.render();
  }

  joined(peer) {
    this.roles.set(peer.id, peer.role);
    this.render();
  }

  left(id) {
    this.roles.delete(id);
    this.render();
  }

  roleChanged(id, role) {
    this.roles.set(id, role);
    if (id === this.me) this.role = role;
    this.render();
  }

  waiting(id, name, readable) {
    this.lobby.set(id, { name, readable });
    this.render();
  }

  lobbyDone(id) {
    this.lobby.delete(id);
    this.render();
  }

  roomUpdated(room) {
    this.room = room;
    this.render();
  }

  /** The label of someone waiting in the lobby. */
  lobbyName(entry) {
    if (!entry.readable) return t('lobby.unreadableName');
    return entry.name || t('lobby.unknownName');
  }

  render() {
    const mod = this.moderates;
    const host = this.role === 'host';
    // Lobby
    $('lobby-panel').hidden = !mod || this.lobby.size === 0;
    const items = [...this.lobby].map(([id, entry]) => {
      const li = document.createElement('li');
      li.dataset.peer = String(id);
      const name = document.createElement('span');
      name.className = entry.readable ? 'name' : 'name warn';
      name.textContent = this.lobbyName(entry);
      const label = entry.name || t('lobby.unknownName');
      const actions = document.createElement('span');
      actions.className = 'actions';
      actions.append(
        button(t('lobby.admit'), t('lobby.admitName', { name: label }), () => this.actions.send({ type: 'admit', peer: id }), 'primary'),
        button(t('lobby.deny'), t('lobby.denyName', { name: label }), () => this.actions.send({ type: 'deny', peer: id })),
      );
      li.append(name, actions);
      return li;
    });
    replaceKeepingFocus($('lobby-list'), items);

    // People
    const ids = [...this.roles.keys()].sort((a, b) => (a === this.me ? -1 : b === this.me ? 1 : a - b));
    const people = ids.map((id) => {
      const role = this.roles.get(id);
      const li = document.createElement('li');
      li.dataset.peer = String(id);
      const name = document.createElement('span');
      name.className = 'name';
      const who = this.actions.nameOf(id);
      name.textContent = id === this.me ? `${who} (${t('people.you')})` : who;
      li.append(name);
      if (role !== 'guest') {
        const badge = document.createElement('span');
        badge.className = 'role';
        badge.textContent = t(`people.${role}`);
        li.append(badge);
      }
      if (mod && id !== this.me) {
        const actions = document.createElement('span');
        actions.className = 'actions';
        actions.append(button(t('people.mute'), t('people.muteName', { name: who }), () => this.actions.send({ type: 'mute', peer: id })));
        if (host && role === 'guest') {
          actions.append(button(t('people.promote'), t('people.promoteName', { name: who }), () => this.actions.send({ type: 'promote', peer: id })));
        }
        if (host || role === 'guest') {
          actions.append(button(t('people.remove'), t('people.removeName', { name: who }), () => this.actions.send({ type: 'remove', peer: id }), 'danger'));
        }
        li.append(actions);
      }
      return li;
    });
    replaceKeepingFocus($('people-list'), people);

    // Settings
    $('settings-panel').hidden = !mod;
    $('host-settings').hidden = !host;
    $('end-meeting').hidden = !host;
    $('set-lobby').checked = this.room.lobby;
    $('set-locked').checked = this.room.locked;
    $('set-persistent').checked = this.room.persistent;
    $('passcode-state').textContent = t(this.room.passcode ? 'settings.passcodeOn' : 'settings.passcodeOff');
    $('clear-passcode').disabled = !this.room.passcode;
  }
}
