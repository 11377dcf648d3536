//! Just enough STUN (RFC 8489) to route a datagram from an address the SFU
//! does not know yet: the USERNAME of a binding request names the receiving
//! agent's ICE ufrag first (RFC 8445 §7.2.2), so one lookup finds the
//! participant whose `Rtc` it is for. Everything else — message integrity,
//! fingerprint, the rest of the request — is str0m's to check.

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const HEADER: usize = 20;
const USERNAME: u16 = 0x0006;
/// Binding request: method 0x001, class request.
const BINDING_REQUEST: u16 = 0x0001;

/// The local ufrag a STUN binding request is addressed to, if `data` is one
/// and carries a USERNAME of the form `ufrag:remote`.
pub(crate) fn request_ufrag(data: &[u8]) -> Option<&str> {
    if data.len() < HEADER || data[4..8] != MAGIC_COOKIE {
        return None;
    }
    if u16::from_be_bytes([data[0], data[1]]) != BINDING_REQUEST {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let mut attrs = data.get(HEADER..HEADER + len)?;
    while attrs.len() >= 4 {
        let ty = u16::from_be_bytes([attrs[0], attrs[1]]);
        let n = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = attrs.get(4..4 + n)?;
        if ty == USERNAME {
            let text = std::str::from_utf8(value).ok()?;
            let (local, _) = text.split_once(':')?;
            return Some(local);
        }
        let padded = 4 + n.div_ceil(4) * 4;
        attrs = attrs.get(padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (ty, v) in attrs {
            body.extend(ty.to_be_bytes());
            body.extend((v.len() as u16).to_be_bytes());
            body.extend(*v);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend((body.len() as u16).to_be_bytes());
        m.extend(MAGIC_COOKIE);
        m.extend([7; 12]);
        m.extend(body);
        m
    }

    #[test]
    fn finds_the_local_ufrag_of_a_binding_request() {
        let m = request(&[(0x0024, &[0, 0, 0, 1]), (USERNAME, b"srv1:cli22")]);
        assert_eq!(request_ufrag(&m), Some("srv1"));
        // After an attribute whose length is not a multiple of 4.
        let m = request(&[(0x8022, b"abc"), (USERNAME, b"x:y")]);
        assert_eq!(request_ufrag(&m), Some("x"));
    }

    #[test]
    fn anything_else_is_none() {
        let good = request(&[(USERNAME, b"srv1:cli22")]);
        let mut response = good.clone();
        response[1] = 0x01;
        response[0] = 0x01; // binding success response
        let mut no_cookie = good.clone();
        no_cookie[4] = 0;
        let mut long = good.clone();
        long[3] = 0xff; // length past the end
        for (what, m) in [
            ("response", response),
            ("no cookie", no_cookie),
            ("length past the end", long),
            ("no username", request(&[(0x0024, &[0, 0, 0, 1])])),
            ("no colon", request(&[(USERNAME, b"srv1")])),
            ("not utf-8", request(&[(USERNAME, &[0xff, b':', b'a'])])),
            ("rtp", vec![0x80; 40]),
            ("short", good[..12].to_vec()),
        ] {
            assert_eq!(request_ufrag(&m), None, "{what}");
        }
    }
}
