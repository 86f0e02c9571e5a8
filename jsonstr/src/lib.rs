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

/// How many bytes each byte adds when escaped.
const EXTRA: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match ESCAPE[i] {
            0 => 0,
            b'u' => 5,
            _ => 1,
        };
        i += 1;
    }
    t
};

/// Appends `s` as a JSON string literal, quotes included. Two passes: the escaped length first
/// (a table sum the compiler vectorizes), then each byte written into place, with no growth
/// checks and no small copies. Never inlined: inlined into the agent's code it would be
/// optimized for size again, as part of its caller.
#[inline(never)]
pub fn push(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let extra: usize = bytes.iter().map(|&b| EXTRA[b as usize] as usize).sum();
    let base = out.len();
    out.resize(base + bytes.len() + extra + 2, 0);
    let dst = &mut out[base..];
    dst[0] = b'"';
    let mut j = 1;
    for &b in bytes {
        match ESCAPE[b as usize] {
            0 => {
                dst[j] = b;
                j += 1;
            }
            b'u' => {
                dst[j..j + 6].copy_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
                j += 6;
            }
            e => {
                dst[j] = b'\\';
                dst[j + 1] = e;
                j += 2;
            }
        }
    }
    dst[j] = b'"';
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
    }

    proptest! {
        #[test]
        fn any_text_round_trips_and_matches_serde_json(s in any::<String>()) {
            let out = ours(&s);
            prop_assert_eq!(&out, &serde_json::to_string(&s).unwrap());
            prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
    }
}
