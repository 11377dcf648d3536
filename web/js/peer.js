// The one RTCPeerConnection to the SFU. The server is the only offerer: its
// first offer carries four receive-only m-lines on which this page publishes
// (mic, camera, screen, screen audio); later offers add one m-line per remote
// track. The page answers and never offers, so there is no glare.
//
// Every sender and receiver gets an encoded transform that runs in the E2EE
// worker (sealing or opening each frame), attached before any media flows:
// senders when their m-line first appears, receivers in `ontrack` (their
// transceivers are `recvonly`, where Chromium honours a transform set there).

export const SOURCES = ['mic', 'camera', 'screen', 'screen_audio'];

/** The inbound-rtp counters `inboundStats` reports (0 when a browser lacks one). */
const INBOUND_COUNTERS = [
  'packetsReceived', 'bytesReceived', 'framesReceived', 'framesDecoded', 'totalSamplesReceived',
  'frameWidth', 'frameHeight', 'nackCount', 'retransmittedPacketsReceived', 'freezeCount',
  'totalFreezesDuration', 'packetsLost',
];

/** Most TURN servers, and URLs per server, taken from an `ice_servers` message. */
const MAX_ICE_SERVERS = 4;

/**
 * The camera's simulcast layers, by the rids the server asks for (lowest
 * first): quarter, half and full size. The server forwards one to each
 * receiver, as its tile and downlink allow, and tells this page which ones
 * someone receives (`layers`); the others are not encoded.
 */
const CAMERA_LAYERS = [
  { rid: 'l', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'm', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'h', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

export class PeerSession {
  /**
   * @param {{
   *   onTrack: (peer: number, source: string, track: MediaStreamTrack) => void,
   *   onState: (state: RTCPeerConnectionState) => void,
   * }} handlers
   */
  constructor(handlers, worker) {
    this.handlers = handlers;
    this.worker = worker;
    // No ICE servers unless the server gives its organisation's TURN relay
    // (`useIceServers`): the SFU is reachable directly, over UDP or TCP,
    // and nothing may reach a third party.
    this.pc = new RTCPeerConnection({
      iceServers: [],
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
      // Chromium's older API needs this flag; the standard one does not.
      encodedInsertableStreams: !hasScriptTransform(),
    });
    /** mid → {peer, source} of the remote track it carries. */
    this.remote = new Map();
    /** source → RTCRtpSender, once the first offer arrived. */
    this.senders = new Map();
    /** source → the track to publish (or null), applied when its sender exists. */
    this.local = new Map();
    /** Whether the camera's layers were configured, and which are wanted. */
    this.layersSet = false;
    this.active = null;
    this.pc.ontrack = (ev) => {
      const info = this.remote.get(ev.transceiver.mid);
      if (!info) return;
      this.#encrypt(ev.receiver, { side: 'receive', kind: ev.track.kind, peer: info.peer, source: info.source });
      this.handlers.onTrack(info.peer, info.source, ev.track);
    };
    this.pc.onconnectionstatechange = () => this.handlers.onState(this.pc.connectionState);
  }

  /** The organisation's TURN servers, with expiring credentials, from its
   * server (`ice_servers`, before the first offer): for networks where media
   * reaches the server neither over UDP nor TCP. */
  useIceServers(servers) {
    // Only TURN URLs, and a few: the server names its organisation's relay
    // here, nothing else; whatever else the message holds is ignored.
    const turn = (u) => typeof u === 'string' && /^turns?:/.test(u);
    const iceServers = (Array.isArray(servers) ? servers : [])
      .slice(0, MAX_ICE_SERVERS)
      .map((s) => ({ urls: (Array.isArray(s?.urls) ? s.urls : []).filter(turn).slice(0, MAX_ICE_SERVERS), username: String(s?.username ?? ''), credential: String(s?.credential ?? '') }))
      .filter((s) => s.urls.length > 0);
    this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers });
  }

  /** Applies a server offer and returns the answer SDP. */
  async answer(offer) {
    this.remote = new Map(offer.tracks.map((t) => [t.mid, { peer: t.peer, source: t.source }]));
    await this.pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
    for (const source of SOURCES) this.#publishOn(source, offer.publish[source]);
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    for (const [source, sender] of this.senders) await sender.replaceTrack(this.local.get(source) ?? null);
    if (!this.layersSet) {
      this.layersSet = true;
      await this.setLayers('camera', this.active ?? [true, true, true]);
    }
    return this.pc.localDescription.sdp;
  }

  /**
   * Sets which of a simulcast source's layers are encoded (`active`, lowest
   * first, as the server's `layers` message says), with each layer's size
   * and rate. A browser that declined simulcast has one encoding: left as is.
   */
  async setLayers(source, active) {
    if (source !== 'camera') return;
    this.active = active;
    const sender = this.senders.get(source);
    if (!sender) return;
    const params = sender.getParameters();
    const encodings = params.encodings ?? [];
    if (encodings.length < 2) return;
    for (const e of encodings) {
      const i = CAMERA_LAYERS.findIndex((l) => l.rid === e.rid);
      if (i < 0) continue;
      e.scaleResolutionDownBy = CAMERA_LAYERS[i].scaleResolutionDownBy;
      e.maxBitrate = CAMERA_LAYERS[i].maxBitrate;
      e.active = active[i] ?? true;
    }
    try {
      await sender.setParameters(params);
    } catch (e) {
      console.warn('layers not set', e);
    }
  }

  #publishOn(source, mid) {
    if (this.senders.has(source)) return;
    const tr = this.pc.getTransceivers().find((t) => t.mid === mid);
    if (!tr) return;
    tr.direction = 'sendonly';
    this.#encrypt(tr.sender, { side: 'send', kind: tr.receiver.track.kind, source });
    this.senders.set(source, tr.sender);
  }

  /** Routes an endpoint's encoded frames through the E2EE worker. */
  #encrypt(endpoint, options) {
    if (hasScriptTransform()) {
      endpoint.transform = new RTCRtpScriptTransform(this.worker, options);
    } else {
      const { readable, writable } = endpoint.createEncodedStreams();
      this.worker.postMessage({ op: 'stream', readable, writable, options }, [readable, writable]);
    }
  }

  /** Publishes `track` as `source`, or stops sending it with null. Nothing is renegotiated. */
  async setSource(source, track) {
    this.local.set(source, track);
    const sender = this.senders.get(source);
    if (sender) await sender.replaceTrack(track);
  }

  /** How media reaches the server now: 'udp', 'tcp', or null before ICE
   * has chosen a path. */
  async transport() {
    const report = await this.pc.getStats();
    for (const s of report.values()) {
      if (s.type !== 'transport' || !s.selectedCandidatePairId) continue;
      const pair = report.get(s.selectedCandidatePairId);
      const local = pair && report.get(pair.localCandidateId);
      if (local?.protocol) return local.protocol;
    }
    return null;
  }

  /** Inbound media counters per remote track, for the UI and diagnostics. */
  async inboundStats() {
    const out = [];
    const report = await this.pc.getStats();
    for (const s of report.values()) {
      if (s.type !== 'inbound-rtp') continue;
      const info = this.remote.get(s.mid);
      if (!info) continue;
      const row = { peer: info.peer, source: info.source, kind: s.kind };
      for (const name of INBOUND_COUNTERS) row[name] = s[name] ?? 0;
      out.push(row);
    }
    return out;
  }

  close() {
    this.pc.close();
  }
}

function hasScriptTransform() {
  return 'RTCRtpScriptTransform' in window;
}

/** Whether this browser can encrypt media end to end (one of the two transform APIs). */
export function canEncryptMedia() {
  return hasScriptTransform() || ('RTCRtpSender' in window && 'createEncodedStreams' in RTCRtpSender.prototype);
}
