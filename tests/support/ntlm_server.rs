//! The server side of NTLM for the test EWS server, written from [MS-NLMP] independently of the
//! client's crate: a type 2 (challenge) message with target info and a timestamp, and the
//! NTLMv2 check of the type 3 (authenticate) message:
//! `NTOWFv2 = HMAC-MD5(MD4(UTF-16LE(password)), UTF-16LE(UPPER(user) + domain))`,
//! `NTProofStr = HMAC-MD5(NTOWFv2, server challenge ‖ blob)`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use md4::{Digest, Md4};
use md5::Md5;

pub enum Step {
    /// Send this type 2 (challenge) message, base64.
    Challenge(String),
    /// The handshake ended: whether the client proved the password.
    Done(bool),
}

pub struct Handshake {
    user: String,
    domain: String,
    password: String,
    challenge: Option<[u8; 8]>,
}

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
const REQUEST_TARGET: u32 = 0x0000_0004;
const NEGOTIATE_NTLM: u32 = 0x0000_0200;
const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
const NEGOTIATE_VERSION: u32 = 0x0200_0000;

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The NTLMv2 proof for a blob, as the server recomputes it.
pub fn nt_proof(
    password: &str,
    user: &str,
    domain: &str,
    challenge: &[u8; 8],
    blob: &[u8],
) -> [u8; 16] {
    let nt_hash: [u8; 16] = Md4::digest(utf16(password)).into();
    let ntowf = hmac_md5(
        &nt_hash,
        &[&utf16(&format!("{}{domain}", user.to_uppercase()))],
    );
    hmac_md5(&ntowf, &[challenge, blob])
}

fn field(msg: &[u8], at: usize) -> Option<&[u8]> {
    let len = u16::from_le_bytes(msg.get(at..at + 2)?.try_into().ok()?) as usize;
    let off = u32::from_le_bytes(msg.get(at + 4..at + 8)?.try_into().ok()?) as usize;
    msg.get(off..off.checked_add(len)?)
}

fn from_utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

impl Handshake {
    /// `user` as the account is configured: `DOMAIN\user` or a plain/UPN name.
    pub fn new(user: &str, password: &str) -> Handshake {
        let (user, domain) = match user.split_once('\\') {
            Some((d, u)) => (u.to_owned(), d.to_owned()),
            None => (user.to_owned(), String::new()),
        };
        Handshake {
            user,
            domain,
            password: password.to_owned(),
            challenge: None,
        }
    }

    pub fn step(&mut self, token: &str) -> Step {
        let Ok(msg) = STANDARD.decode(token.trim()) else {
            return Step::Done(false);
        };
        if msg.len() < 12 || &msg[..8] != SIGNATURE {
            return Step::Done(false);
        }
        match u32::from_le_bytes(msg[8..12].try_into().unwrap()) {
            1 => Step::Challenge(self.challenge_message()),
            3 => Step::Done(self.check(&msg)),
            _ => Step::Done(false),
        }
    }

    fn challenge_message(&mut self) -> String {
        let challenge: [u8; 8] = std::array::from_fn(|_| fastrand::u8(..));
        self.challenge = Some(challenge);
        let target = utf16("EXAMPLE");
        let mut info = Vec::new();
        let mut av = |id: u16, value: &[u8]| {
            info.extend_from_slice(&id.to_le_bytes());
            info.extend_from_slice(&(value.len() as u16).to_le_bytes());
            info.extend_from_slice(value);
        };
        av(2, &utf16("EXAMPLE"));
        av(1, &utf16("EXCH01"));
        av(4, &utf16("example.com"));
        av(3, &utf16("exch01.example.com"));
        let now = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 11_644_473_600)
            * 10_000_000;
        av(7, &now.to_le_bytes());
        av(0, &[]);
        let flags = NEGOTIATE_UNICODE
            | REQUEST_TARGET
            | NEGOTIATE_NTLM
            | NEGOTIATE_ALWAYS_SIGN
            | TARGET_TYPE_DOMAIN
            | NEGOTIATE_EXTENDED_SESSIONSECURITY
            | NEGOTIATE_TARGET_INFO
            | NEGOTIATE_VERSION;
        let header = 56u32;
        let mut m = Vec::new();
        m.extend_from_slice(SIGNATURE);
        m.extend_from_slice(&2u32.to_le_bytes());
        m.extend_from_slice(&(target.len() as u16).to_le_bytes());
        m.extend_from_slice(&(target.len() as u16).to_le_bytes());
        m.extend_from_slice(&header.to_le_bytes());
        m.extend_from_slice(&flags.to_le_bytes());
        m.extend_from_slice(&challenge);
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&(info.len() as u16).to_le_bytes());
        m.extend_from_slice(&(info.len() as u16).to_le_bytes());
        m.extend_from_slice(&(header + target.len() as u32).to_le_bytes());
        // Version: Windows Server 2019 (10.0 build 17763), NTLM revision 15.
        m.extend_from_slice(&[10, 0, 0x03, 0x45, 0, 0, 0, 15]);
        assert_eq!(m.len(), header as usize);
        m.extend_from_slice(&target);
        m.extend_from_slice(&info);
        STANDARD.encode(m)
    }

    fn check(&self, msg: &[u8]) -> bool {
        let Some(challenge) = self.challenge else {
            return false;
        };
        let (Some(nt), Some(domain), Some(user)) = (field(msg, 20), field(msg, 28), field(msg, 36))
        else {
            return false;
        };
        if nt.len() <= 16 + 28 {
            return false; // NTLMv1 or garbage: refused, as Exchange with NTLMv2-only policy does
        }
        let (user, domain) = (from_utf16(user), from_utf16(domain));
        if !user.eq_ignore_ascii_case(&self.user) || !domain.eq_ignore_ascii_case(&self.domain) {
            return false;
        }
        let (proof, blob) = nt.split_at(16);
        nt_proof(&self.password, &user, &domain, &challenge, blob) == proof
    }
}
