//! Batched UDP: many datagrams per system call.
//!
//! The media loop reads with `recvmmsg` and writes with `sendmmsg` (Linux),
//! and sends a run of equal-sized datagrams to one address as one UDP GSO
//! message when the kernel allows it. Buffers are allocated once; nothing is
//! allocated per datagram here. The raw relay of the benchmark uses the same
//! code, so the two are measured on the same footing.
//!
//! Both types work on a non-blocking socket and return
//! [`io::ErrorKind::WouldBlock`] when the kernel has nothing to read or no room
//! to write; the caller waits for readiness (tokio's `try_io`) and calls again.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};

/// Socket buffer the media socket asks for, each way. One socket carries every
/// participant's media: the kernel's default (~208 KB, a few hundred packets)
/// overflows when the media thread is off its core for tens of milliseconds,
/// and a video packet lost on the way in holds that publisher's frames for
/// every receiver until it is resent.
pub const SOCKET_BUFFER: usize = 8 << 20;

/// Asks for `bytes` of receive and send buffer: beyond `net.core.rmem_max` /
/// `wmem_max` when the process may (`CAP_NET_ADMIN`), else up to those limits.
/// Returns the receive buffer the kernel granted (it reports twice the
/// payload size it accounts for).
pub fn enlarge_buffers(socket: &impl AsFd, bytes: usize) -> io::Result<usize> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    let fd = socket.as_fd();
    if setsockopt(&fd, sockopt::RcvBufForce, &bytes).is_err() {
        setsockopt(&fd, sockopt::RcvBuf, &bytes)?;
    }
    if setsockopt(&fd, sockopt::SndBufForce, &bytes).is_err() {
        setsockopt(&fd, sockopt::SndBuf, &bytes)?;
    }
    Ok(getsockopt(&fd, sockopt::RcvBuf)?)
}

/// Datagrams per system call.
pub const BATCH: usize = 64;

/// Room for one datagram: larger than any media packet str0m makes.
const SLOT: usize = 2048;

/// Most segments the kernel takes in one GSO message (`UDP_MAX_SEGMENTS`).
const MAX_SEGMENTS: usize = 64;

fn to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(a) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*a)));
    }
    addr.as_sockaddr_in6()
        .map(|a| SocketAddr::V6(SocketAddrV6::from(*a)))
}

fn to_nix(addr: SocketAddr) -> SockaddrStorage {
    match addr {
        SocketAddr::V4(a) => SockaddrStorage::from(a),
        SocketAddr::V6(a) => SockaddrStorage::from(a),
    }
}

fn io_err(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Reads up to [`BATCH`] datagrams per call into buffers it owns.
pub struct Receiver {
    bufs: Box<[[u8; SLOT]; BATCH]>,
    headers: MultiHeaders<SockaddrStorage>,
    got: Vec<(usize, SocketAddr)>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("pending", &self.got.len())
            .finish_non_exhaustive()
    }
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver {
            bufs: Box::new([[0u8; SLOT]; BATCH]),
            headers: MultiHeaders::preallocate(BATCH, None),
            got: Vec::with_capacity(BATCH),
        }
    }
}

impl Receiver {
    /// Reads what the socket holds, up to [`BATCH`] datagrams, without
    /// blocking. Returns how many were read; [`Receiver::get`] gives them.
    pub fn recv(&mut self, socket: &impl AsFd) -> io::Result<usize> {
        self.got.clear();
        // On the stack: nothing is allocated per system call.
        let mut slices = self.bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        let results = recvmmsg(
            socket.as_fd().as_raw_fd(),
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io_err)?;
        for msg in results {
            // A datagram from no address (never for UDP) is skipped.
            let from = msg.address.as_ref().and_then(to_std);
            if let Some(from) = from {
                self.got.push((msg.bytes.min(SLOT), from));
            } else {
                self.got.push((0, SocketAddr::from(([0, 0, 0, 0], 0))));
            }
        }
        Ok(self.got.len())
    }

    /// The `i`-th datagram of the last read: its source and contents.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let &(len, from) = self.got.get(i)?;
        (len > 0).then(|| (from, &self.bufs[i][..len]))
    }
}

/// Queues datagrams and writes them with as few system calls as it can.
#[derive(Default)]
pub struct Sender {
    queue: Vec<(SocketAddr, Vec<u8>)>,
    /// Index of the first datagram not yet written.
    sent: usize,
    headers: Option<MultiHeaders<SockaddrStorage>>,
    addrs: Vec<Option<SockaddrStorage>>,
    /// Whether the kernel took a GSO message; cleared on the first refusal.
    gso: Option<bool>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("queued", &self.pending())
            .field("gso", &self.gso)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// Queues one datagram.
    pub fn push(&mut self, destination: SocketAddr, contents: Vec<u8>) {
        self.queue.push((destination, contents));
    }

    /// Forgets everything queued; returns how many datagrams were shed.
    pub fn clear(&mut self) -> usize {
        let shed = self.pending();
        self.queue.clear();
        self.sent = 0;
        shed
    }

    /// Datagrams queued and not yet written.
    pub fn pending(&self) -> usize {
        self.queue.len() - self.sent
    }

    /// Writes what is queued. Returns `WouldBlock` (keeping the rest queued)
    /// when the socket's buffer is full; other errors of a datagram drop
    /// only that datagram.
    pub fn flush(&mut self, socket: &impl AsFd) -> io::Result<()> {
        while self.sent < self.queue.len() {
            let run = self.gso_run();
            let result = if run > 1 {
                self.send_gso(socket, run)
            } else {
                self.send_batch(socket)
            };
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                Err(_) if run > 1 && self.gso.is_none() => {
                    // The first GSO message was refused (an old kernel, or a
                    // device that cannot segment): never try GSO again, and
                    // send the same datagrams one by one.
                    self.gso = Some(false);
                }
                Err(_) => {
                    // The first datagram of the batch was refused (e.g. no
                    // route); drop it and go on with the others.
                    self.sent += 1;
                }
            }
        }
        self.queue.clear();
        self.sent = 0;
        Ok(())
    }

    /// How many datagrams from `sent` on can go as one GSO message: same
    /// destination, same size, the last possibly shorter.
    fn gso_run(&self) -> usize {
        if self.gso == Some(false) {
            return 1;
        }
        let rest = &self.queue[self.sent..];
        let Some((dest, first)) = rest.first() else {
            return 0;
        };
        let size = first.len();
        let mut n = 1;
        for (d, c) in &rest[1..] {
            if d != dest || c.len() > size || n == MAX_SEGMENTS || (n + 1) * size > 65_000 {
                break;
            }
            n += 1;
            if c.len() < size {
                break;
            }
        }
        n
    }

    fn send_gso(&mut self, socket: &impl AsFd, run: usize) -> io::Result<()> {
        let (dest, first) = &self.queue[self.sent];
        let segment = u16::try_from(first.len()).unwrap_or(u16::MAX);
        let mut slices = [IoSlice::new(&[]); MAX_SEGMENTS];
        for (slice, (_, c)) in slices
            .iter_mut()
            .zip(&self.queue[self.sent..self.sent + run])
        {
            *slice = IoSlice::new(c);
        }
        let slices = &slices[..run.min(MAX_SEGMENTS)];
        let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
        let addr = to_nix(*dest);
        nix::sys::socket::sendmsg(
            socket.as_fd().as_raw_fd(),
            slices,
            &cmsg,
            MsgFlags::MSG_DONTWAIT,
            Some(&addr),
        )
        .map_err(io_err)?;
        self.gso = Some(true);
        self.sent += run;
        Ok(())
    }

    fn send_batch(&mut self, socket: &impl AsFd) -> io::Result<()> {
        // Single datagrams up to the next GSO-able run, at most BATCH.
        let mut end = self.sent + 1;
        while end < self.queue.len() && end - self.sent < BATCH {
            if self.gso != Some(false) {
                let (d, c) = &self.queue[end];
                if let Some((d2, c2)) = self.queue.get(end + 1) {
                    if d == d2 && c.len() == c2.len() {
                        break;
                    }
                }
            }
            end += 1;
        }
        let batch = &self.queue[self.sent..end];
        self.addrs.clear();
        self.addrs
            .extend(batch.iter().map(|(d, _)| Some(to_nix(*d))));
        let mut slices = [[IoSlice::new(&[])]; BATCH];
        for (slice, (_, c)) in slices.iter_mut().zip(batch) {
            *slice = [IoSlice::new(c)];
        }
        let headers = self
            .headers
            .get_or_insert_with(|| MultiHeaders::preallocate(BATCH, None));
        let results = sendmmsg(
            socket.as_fd().as_raw_fd(),
            headers,
            slices[..batch.len()].iter(),
            &self.addrs,
            [],
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io_err)?;
        let n = results.count();
        self.sent += n.max(1).min(batch.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn bound() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_nonblocking(true).expect("nonblocking");
        s
    }

    /// Runs of equal sizes to one address (GSO), single datagrams between
    /// them, several destinations: each arrives whole, in order, once.
    #[test]
    fn batched_datagrams_arrive_whole_and_in_order() {
        let out = bound();
        let dests: Vec<UdpSocket> = (0..3).map(|_| bound()).collect();
        let mut tx = Sender::default();
        let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); dests.len()];
        let mut k = 0u8;
        for round in 0..10 {
            for (d, sock) in dests.iter().enumerate() {
                let addr = sock.local_addr().expect("addr");
                // A frame cut into equal packets and a shorter last one,
                // then an audio-sized datagram.
                for len in [1100, 1100, 1100, 700, 90 + round] {
                    let packet = vec![k; len];
                    k = k.wrapping_add(1);
                    expected[d].push(packet.clone());
                    tx.push(addr, packet);
                }
            }
        }
        tx.flush(&out).expect("flush");
        assert_eq!(tx.pending(), 0);
        let mut rx = Receiver::default();
        for (d, sock) in dests.iter().enumerate() {
            let mut got = Vec::new();
            while let Ok(n) = rx.recv(sock) {
                if n == 0 {
                    break;
                }
                for i in 0..n {
                    let (from, data) = rx.get(i).expect("datagram");
                    assert_eq!(from, out.local_addr().expect("addr"));
                    got.push(data.to_vec());
                }
            }
            assert_eq!(got, expected[d], "destination {d}");
        }
    }
}
