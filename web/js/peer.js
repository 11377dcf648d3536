// The one RTCPeerConnection to the SFU. The server is the only offerer: its
// first offer carries four receive-only m-lines on which this page publishes
// (mic, camera, screen, screen audio); later offers add one m-line per remote
// track. The page answers and never offers, so there is no glare.
//
// End-to-end encryption (next step) attaches an encoded transform to each
// sender in `#publishOn` and each receiver in `ontrack`; both run before any
// media flows on those transceivers, as Chromium requires.

export const SOURCES = ['mic', 'camera', 'screen', 'screen_audio'];

export class PeerSession {
  /**
   * @param {{
   *   onTrack: (peer: number, source: string, track: MediaStreamTrack) => void,
   *   onState: (state: RTCPeerConnectionState) => void,
   * }} handlers
   */
  constructor(handlers) {
    this.handlers = handlers;
    // No ICE servers: the SFU is reachable directly, and nothing may reach a third party.
    this.pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    /** mid → {peer, source} of the remote track it carries. */
    this.remote = new Map();
    /** source → RTCRtpSender, once the first offer arrived. */
    this.senders = new Map();
    /** source → the track to publish (or null), applied when its sender exists. */
    this.local = new Map();
    this.pc.ontrack = (ev) => {
      const info = this.remote.get(ev.transceiver.mid);
      if (info) this.handlers.onTrack(info.peer, info.source, ev.track);
    };
    this.pc.onconnectionstatechange = () => this.handlers.onState(this.pc.connectionState);
  }

  /** Applies a server offer and returns the answer SDP. */
  async answer(offer) {
    this.remote = new Map(offer.tracks.map((t) => [t.mid, { peer: t.peer, source: t.source }]));
    await this.pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
    for (const source of SOURCES) this.#publishOn(source, offer.publish[source]);
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    for (const [source, sender] of this.senders) await sender.replaceTrack(this.local.get(source) ?? null);
    return this.pc.localDescription.sdp;
  }

  #publishOn(source, mid) {
    if (this.senders.has(source)) return;
    const tr = this.pc.getTransceivers().find((t) => t.mid === mid);
    if (!tr) return;
    tr.direction = 'sendonly';
    this.senders.set(source, tr.sender);
  }

  /** Publishes `track` as `source`, or stops sending it with null. Nothing is renegotiated. */
  async setSource(source, track) {
    this.local.set(source, track);
    const sender = this.senders.get(source);
    if (sender) await sender.replaceTrack(track);
  }

  /** Inbound media counters per remote track, for the UI and diagnostics. */
  async inboundStats() {
    const out = [];
    const report = await this.pc.getStats();
    for (const s of report.values()) {
      if (s.type !== 'inbound-rtp') continue;
      const info = this.remote.get(s.mid);
      if (!info) continue;
      out.push({
        peer: info.peer,
        source: info.source,
        kind: s.kind,
        packetsReceived: s.packetsReceived ?? 0,
        bytesReceived: s.bytesReceived ?? 0,
        framesReceived: s.framesReceived ?? 0,
        framesDecoded: s.framesDecoded ?? 0,
        totalSamplesReceived: s.totalSamplesReceived ?? 0,
        frameWidth: s.frameWidth ?? 0,
      });
    }
    return out;
  }

  close() {
    this.pc.close();
  }
}
