//! Text as a JSON string literal, appended to a buffer: what PutTraceSegments needs for every
//! segment document (a JSON text sent as a JSON string, so full of `"` to escape).
//!
//! Why a crate of its own: generic code such as serde_json's string serializer is compiled in
//! the crate that uses it, and the agent is built for size (opt-level "z"), where escaping was
//! a quarter of the X-Ray relay's CPU (BENCHMARKS.md). A plain function here is built at
//! opt-level 3 (the workspace's release profile says so) and stays that way through LTO. The
//! output is the same as serde_json's: `"`, `\` and control characters escaped, the short forms
//! where JSON has them, everything else (all of UTF-8) as it is.

/// What each byte becomes: 0 as it is; `b'u'` as `\u00XX`; anything else `\` and that byte.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// How much text is escaped per reservation: room for its worst case (every byte as `\u00XX`,
/// 6 KiB) is reserved before each piece, so a buffer sized for the usual case is not grown.
const PIECE: usize = 1024;

/// Appends `s` as a JSON string literal, quotes included, in one pass. Room for a piece's worst
/// case is reserved first, so nothing is checked or grown per byte. On x86_64, 16 bytes at a
/// time (SSE2, which every x86_64 has): bytes up to the first one that needs escaping are
/// copied with one store, that byte is escaped, and the scan goes on after it; segment
/// documents have a `"` every few bytes, so this is what most of the time goes to. Never
/// inlined: inlined into the agent's code it would be optimized for size again, as part of its
/// caller.
#[inline(never)]
pub fn push(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // A piece may end inside a UTF-8 sequence: bytes of 0x80 and above are copied as they are.
    for piece in s.as_bytes().chunks(PIECE) {
        out.reserve(piece.len() * 6);
        let base = out.len();
        // SAFETY: `reserve` made room for 6 bytes per input byte past `base`; every write below
        // stays within that (the 16-byte stores included: see `Writer::simd`), and only bytes
        // written are exposed by `set_len`. What is written keeps `s` valid UTF-8: its bytes
        // as they are and ASCII escapes.
        unsafe {
            let mut w = Writer { dst: out.as_mut_ptr().add(base), start: out.as_mut_ptr().add(base) };
            #[cfg(target_arch = "x86_64")]
            let mut i = w.simd(piece);
            #[cfg(not(target_arch = "x86_64"))]
            let mut i = 0;
            while i < piece.len() {
                w.one(piece[i]);
                i += 1;
            }
            out.set_len(base + w.written());
        }
    }
    out.push(b'"');
}

struct Writer {
    dst: *mut u8,
    start: *mut u8,
}

impl Writer {
    unsafe fn byte(&mut self, b: u8) {
        self.dst.write(b);
        self.dst = self.dst.add(1);
    }

    fn written(&self) -> usize {
        // SAFETY: both point into the same allocation, `dst` at or after `start`.
        unsafe { self.dst.offset_from(self.start) as usize }
    }

    /// Writes one byte, escaped if it must be.
    #[inline(always)]
    unsafe fn one(&mut self, b: u8) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        match ESCAPE[b as usize] {
            0 => self.byte(b),
            b'u' => {
                for c in [b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]] {
                    self.byte(c);
                }
            }
            e => {
                self.byte(b'\\');
                self.byte(e);
            }
        }
    }

    /// Writes `src` 16 bytes at a time while at least 16 are left; returns how far it got.
    /// Each 16-byte store may run past what is kept (`dst` moves on only by the clean bytes),
    /// but stays within the reservation: with k ≥ 16 input bytes left, 6 per input byte remain
    /// reserved, and 6k ≥ 16.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn simd(&mut self, src: &[u8]) -> usize {
        use std::arch::x86_64::*;
        let (quote, backslash, space) = (_mm_set1_epi8(b'"' as i8), _mm_set1_epi8(b'\\' as i8), _mm_set1_epi8(0x1f));
        let mut i = 0;
        while i + 16 <= src.len() {
            let v = _mm_loadu_si128(src.as_ptr().add(i).cast());
            _mm_storeu_si128(self.dst.cast(), v);
            // Control characters: v <= 0x1f unsigned, that is min(v, 0x1f) == v.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, space), v);
            let special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)), control);
            let mask = _mm_movemask_epi8(special) as u32;
            if mask == 0 {
                self.dst = self.dst.add(16);
                i += 16;
            } else {
                let k = mask.trailing_zeros() as usize;
                self.dst = self.dst.add(k);
                self.one(src[i + k]);
                i += k + 1;
            }
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    fn ours(s: &str) -> String {
        let mut v = Vec::new();
        super::push(&mut v, s);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escapes_as_serde_json_does() {
        for s in ["", "plain", r#"{"a":"b\"c","d":[1,2]}"#, "tab\there\nline\r\u{0}\u{1f}\u{7f}", "ünïcødé ✓ 🚀", "back\\slash"] {
            assert_eq!(ours(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
        // Longer than a piece, with characters that straddle the piece boundaries.
        let long = "é\"ab🚀\n".repeat(400);
        assert_eq!(ours(&long), serde_json::to_string(&long).unwrap());
    }

    proptest! {
        #[test]
        fn any_text_round_trips_and_matches_serde_json(s in any::<String>()) {
            let out = ours(&s);
            prop_assert_eq!(&out, &serde_json::to_string(&s).unwrap());
            prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }

        /// Long texts dense with bytes to escape, so escapes fall at every place of a 16-byte
        /// block, at block edges and in the tail.
        #[test]
        fn long_texts_full_of_escapes_match_serde_json(s in "([a-z\"\\\\\u{0}-\u{1f}é🚀]{0,3}[a-z]{0,20}){0,40}") {
            prop_assert_eq!(ours(&s), serde_json::to_string(&s).unwrap());
        }
    }
}
