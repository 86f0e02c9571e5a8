//! Mozilla's root certificates, compiled in: what HTTPS trusts in an image with no CA bundle
//! (`FROM scratch`, minimal bases). build.rs writes them (from the webpki-root-certs crate) one
//! DER certificate after another; here they sit in a section of their own, `.agent_roots`,
//! rather than in the middle of `.rodata`, where their 130 KB made `agent health` — which never
//! reads them — touch 0.07 MB more (fault-around maps the pages beside each one it needs).

use rustls::pki_types::CertificateDer;

const LEN: usize = include!(concat!(env!("OUT_DIR"), "/roots_len.rs"));

#[link_section = ".agent_roots"]
static DER: [u8; LEN] = *include_bytes!(concat!(env!("OUT_DIR"), "/roots.der"));

/// Every certificate, split at the lengths their DER headers give (`30 82 hi lo`: a SEQUENCE
/// with a two-byte length, as every root is).
pub fn certificates() -> Vec<CertificateDer<'static>> {
    let mut out = Vec::with_capacity(150);
    let mut rest: &'static [u8] = &DER;
    while rest.len() >= 4 && rest[0] == 0x30 && rest[1] == 0x82 {
        let len = 4 + ((rest[2] as usize) << 8 | rest[3] as usize);
        let Some((cert, tail)) = rest.split_at_checked(len) else { break };
        out.push(CertificateDer::from(cert));
        rest = tail;
    }
    out
}
