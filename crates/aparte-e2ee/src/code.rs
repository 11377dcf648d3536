//! The security code: a short rendering of the MLS epoch authenticator that
//! every member of an epoch sees identically. Reading it aloud or comparing it
//! on screens detects a server that split the meeting into two groups or slipped
//! someone in (RFC 9420 §8.7: the epoch authenticator is for exactly this).

/// 64 emoji, each easy to name and hard to confuse with another.
const EMOJI: [&str; 64] = [
    "🐶", "🐱", "🦊", "🐻", "🐼", "🐨", "🐯", "🦁", "🐮", "🐷", "🐸", "🐵", "🐔", "🐧", "🦉", "🐢",
    "🐙", "🦀", "🐳", "🐬", "🦋", "🐝", "🐞", "🌵", "🌲", "🌻", "🌹", "🍄", "🍎", "🍋", "🍌", "🍉",
    "🍇", "🍓", "🍒", "🥕", "🌽", "🥐", "🧀", "🍕", "🎂", "☕", "⚽", "🏀", "🎸", "🎺", "🎲", "🔑",
    "🔔", "📚", "✏️", "📎", "✂️", "🔦", "⏰", "☂️", "⚓", "🚲", "🚗", "🚀", "⛵", "🏠", "🌙", "⭐",
];

/// Emoji shown per code (36 bits).
const EMOJI_COUNT: usize = 6;

/// The security code of one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityCode {
    /// Six emoji, for comparing screens.
    pub emoji: Vec<&'static str>,
    /// Twenty digits in four groups of five, for reading aloud (66 bits).
    pub digits: String,
}

impl SecurityCode {
    /// The code for an epoch authenticator (at least 16 bytes).
    pub fn from_authenticator(auth: &[u8]) -> Self {
        let mut bits = [0u8; 16];
        for (dst, src) in bits.iter_mut().zip(auth) {
            *dst = *src;
        }
        let n = u128::from_be_bytes(bits);
        let emoji = (0..EMOJI_COUNT)
            .map(|i| EMOJI[((n >> (122 - 6 * i)) & 63) as usize])
            .collect();
        // 10^20 < 2^67: the low 80 bits reduced mod 10^20 are close to uniform.
        let low = n & ((1u128 << 80) - 1);
        let v = low % 100_000_000_000_000_000_000;
        let s = format!("{v:020}");
        let digits = [&s[0..5], &s[5..10], &s[10..15], &s[15..20]].join(" ");
        SecurityCode { emoji, digits }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_deterministic_and_sensitive() {
        let a = SecurityCode::from_authenticator(&[1u8; 32]);
        let b = SecurityCode::from_authenticator(&[1u8; 32]);
        let mut other = [1u8; 32];
        other[15] ^= 1;
        let c = SecurityCode::from_authenticator(&other);
        assert_eq!(a, b);
        assert_ne!(a.digits, c.digits);
        assert_eq!(a.emoji.len(), 6);
        assert_eq!(a.digits.len(), 23);
        let distinct: std::collections::HashSet<_> = EMOJI.iter().collect();
        assert_eq!(distinct.len(), 64);
    }
}
