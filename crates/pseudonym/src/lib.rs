//! Keyed pseudonyms for borrower ids.
//!
//! A pseudonym is HMAC-SHA256 of the caller's canonical borrower id under a
//! key derived from the library's master key for one library and purpose,
//! truncated to 128 bits. Without the master key the pseudonyms cannot be
//! recomputed from a list of borrower ids, and pseudonyms of different
//! libraries or purposes cannot be linked.

use hmac::{Hmac, KeyInit, Mac};
use keys::{Fingerprint, SecretKey};
use loans::{PSEUDONYM_LEN, Pseudonym};
use sha2::Sha256;

/// First HKDF info part of every pseudonym key.
pub const PURPOSE_PSEUDONYM: &[u8] = b"pseudonym";

/// Computes pseudonyms for one library and purpose.
///
/// Holds a pre-keyed HMAC (key material), so it has no `Debug`; it is
/// `Send + Sync`, so one instance serves all threads.
pub struct Pseudonymizer {
    // Keyed once; cloning the state per call skips the HMAC key schedule.
    mac: Hmac<Sha256>,
    master_fingerprint: Fingerprint,
}

impl Pseudonymizer {
    /// A pseudonymizer under the key `master.derive(&[PURPOSE_PSEUDONYM, library, purpose])`.
    pub fn new(master: &SecretKey, library: &str, purpose: &str) -> Pseudonymizer {
        let derived = master.derive(&[PURPOSE_PSEUDONYM, library.as_bytes(), purpose.as_bytes()]);
        Pseudonymizer {
            mac: keyed(derived.expose_secret()),
            master_fingerprint: master.fingerprint(),
        }
    }

    /// The pseudonym of a canonical borrower id (canonicalization is the caller's job).
    pub fn pseudonymize(&self, canonical_id: &[u8]) -> Pseudonym {
        let mut mac = self.mac.clone();
        mac.update(canonical_id);
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; PSEUDONYM_LEN];
        out.copy_from_slice(&tag[..PSEUDONYM_LEN]);
        Pseudonym(out)
    }

    /// Fingerprint of the master key, for audit output.
    pub fn master_fingerprint(&self) -> Fingerprint {
        self.master_fingerprint
    }
}

/// Plain HMAC-SHA256 of `message` under `key`, for reference tests.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = keyed(key);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn keyed(key: &[u8]) -> Hmac<Sha256> {
    // HMAC is defined for keys of every length (long keys are hashed first).
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::KEY_LEN;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 4231 section 4: (key, data, HMAC-SHA-256 or its first 128 bits).
    fn rfc4231_cases() -> Vec<(Vec<u8>, Vec<u8>, &'static str)> {
        vec![
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                h("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                vec![0x0c; 20],
                b"Test With Truncation".to_vec(),
                "a3b6167473100ee06e0c796c2955552b",
            ),
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                vec![0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ]
    }

    #[test]
    fn hmac_sha256_matches_rfc4231_cases_1_to_7() {
        let cases = rfc4231_cases();
        assert_eq!(cases.len(), 7);
        for (i, (key, data, expected)) in cases.iter().enumerate() {
            let mac = hmac_sha256(key, data);
            let want = h(expected);
            assert_eq!(
                &mac[..want.len()],
                &want[..],
                "RFC 4231 test case {}",
                i + 1
            );
        }
    }

    #[test]
    fn pseudonym_is_truncated_hmac_under_derived_key() {
        let master = SecretKey::from_bytes([0x42; KEY_LEN]);
        let p = Pseudonymizer::new(&master, "central-library", "loans");
        let derived = master.derive(&[b"pseudonym", b"central-library", b"loans"]);
        for id in [&b""[..], b"0001234", b"borrower-99999999"] {
            let full = hmac_sha256(derived.expose_secret(), id);
            assert_eq!(p.pseudonymize(id).0[..], full[..16]);
        }
        assert_eq!(p.master_fingerprint(), master.fingerprint());
    }

    #[test]
    fn library_and_purpose_separate_pseudonyms() {
        let master = SecretKey::from_bytes([7; KEY_LEN]);
        let id = b"B-000123";
        let a = Pseudonymizer::new(&master, "north", "loans").pseudonymize(id);
        let b = Pseudonymizer::new(&master, "south", "loans").pseudonymize(id);
        let c = Pseudonymizer::new(&master, "north", "holds").pseudonymize(id);
        // Length prefixes keep ("nor","thloans") apart from ("north","loans").
        let d = Pseudonymizer::new(&master, "nor", "thloans").pseudonymize(id);
        let e = Pseudonymizer::new(&SecretKey::from_bytes([8; KEY_LEN]), "north", "loans")
            .pseudonymize(id);
        let all = [a, b, c, d, e];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j], "{i} vs {j}");
            }
        }
    }

    #[test]
    fn pseudonymizer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Pseudonymizer>();
    }
}
