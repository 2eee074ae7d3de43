//! Signed control records: `{"key": "<name>", "payload": "<the update's JSON text>", "signature":
//! "<base64 Ed25519 signature of the payload's bytes>"}`, one per line (file) or per record
//! (Kafka). The payload travels as a string so that the signed bytes are exactly the bytes
//! verified, whatever JSON formatting tools apply to the envelope.
//!
//! A pipeline trusts the public keys named in `SET 'control.trusted-keys' = 'name:base64, ...'`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// A control record as it travels.
#[derive(Debug, Deserialize, Serialize)]
struct Envelope {
    key: String,
    payload: String,
    signature: String,
}

/// The public keys a pipeline accepts updates from, by name.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, VerifyingKey>,
}

impl TrustedKeys {
    /// Parses `name:base64-public-key` entries separated by commas.
    pub fn parse(text: &str) -> Result<TrustedKeys, String> {
        let mut keys = BTreeMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, key) = entry
                .split_once(':')
                .ok_or_else(|| format!("'{entry}' is not name:base64-public-key"))?;
            let bytes = BASE64
                .decode(key.trim())
                .map_err(|e| format!("key `{name}`: not base64: {e}"))?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| format!("key `{name}`: an Ed25519 public key is 32 bytes"))?;
            let key = VerifyingKey::from_bytes(&bytes)
                .map_err(|e| format!("key `{name}`: not an Ed25519 public key: {e}"))?;
            keys.insert(name.trim().to_string(), key);
        }
        Ok(TrustedKeys { keys })
    }

    /// The payload of a record signed by a trusted key, with the key's name; the reason otherwise.
    pub fn open(&self, record: &str) -> Result<(String, String), Rejection> {
        let envelope: Envelope = serde_json::from_str(record).map_err(|e| Rejection {
            key: None,
            reason: format!(
                "not a signed control record ({{\"key\", \"payload\", \"signature\"}}): {e}"
            ),
        })?;
        let key_name = Some(envelope.key.clone());
        let reject = |reason: String| Rejection {
            key: key_name.clone(),
            reason,
        };
        let Some(key) = self.keys.get(&envelope.key) else {
            return Err(reject(format!(
                "key `{}` is not trusted by this pipeline (control.trusted-keys)",
                envelope.key
            )));
        };
        let signature = BASE64
            .decode(envelope.signature.trim())
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or_else(|| reject("the signature is not a base64 Ed25519 signature".into()))?;
        key.verify(envelope.payload.as_bytes(), &signature)
            .map_err(|_| {
                reject(format!(
                    "bad signature: the payload was not signed by key `{}` (forged or altered)",
                    envelope.key
                ))
            })?;
        Ok((envelope.key, envelope.payload))
    }
}

/// Why a record was not accepted, with the key it claimed when it got that far.
#[derive(Debug)]
pub struct Rejection {
    pub key: Option<String>,
    pub reason: String,
}

/// A signing key as stored in a key file: the 32-byte seed, base64.
pub fn signing_key(text: &str) -> Result<SigningKey, String> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|e| format!("the key file is not base64: {e}"))?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "an Ed25519 private key file holds 32 bytes (base64)".to_string())?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A new signing key from the operating system's randomness: (private key file text, public key).
pub fn generate() -> Result<(String, String), String> {
    use std::io::Read;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    Ok((
        BASE64.encode(seed),
        BASE64.encode(key.verifying_key().to_bytes()),
    ))
}

/// The signed record (one line of JSON) carrying `payload`.
pub fn seal(key_name: &str, key: &SigningKey, payload: &str) -> String {
    let signature = key.sign(payload.as_bytes());
    let envelope = Envelope {
        key: key_name.to_string(),
        payload: payload.to_string(),
        signature: BASE64.encode(signature.to_bytes()),
    };
    serde_json::to_string(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(seed: u8) -> (SigningKey, String) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let public = BASE64.encode(key.verifying_key().to_bytes());
        (key, public)
    }

    #[test]
    fn a_record_signed_by_a_trusted_key_opens() {
        let (key, public) = pair(1);
        let trusted = TrustedKeys::parse(&format!("ops:{public}")).unwrap();
        let record = seal("ops", &key, r#"{"op":"remove_rule"}"#);
        assert_eq!(
            trusted.open(&record).unwrap(),
            ("ops".to_string(), r#"{"op":"remove_rule"}"#.to_string())
        );
    }

    #[test]
    fn forged_altered_and_unknown_records_are_rejected() {
        let (key, public) = pair(1);
        let (other, _) = pair(2);
        let trusted = TrustedKeys::parse(&format!("ops:{public}")).unwrap();
        // Signed by another key under a trusted name: forged.
        let forged = seal("ops", &other, "{}");
        assert!(
            trusted
                .open(&forged)
                .unwrap_err()
                .reason
                .contains("bad signature")
        );
        // The payload changed after signing.
        let record = seal("ops", &key, r#"{"version":2}"#).replace("2}", "3}");
        assert!(
            trusted
                .open(&record)
                .unwrap_err()
                .reason
                .contains("bad signature")
        );
        // An unknown key name.
        let stranger = seal("eve", &other, "{}");
        assert!(
            trusted
                .open(&stranger)
                .unwrap_err()
                .reason
                .contains("not trusted")
        );
        // Not a signed record at all.
        assert!(
            trusted
                .open(r#"{"op":"add_rule"}"#)
                .unwrap_err()
                .reason
                .contains("not a signed control record")
        );
        assert!(trusted.open("garbage").is_err());
    }

    #[test]
    fn key_lists_are_checked() {
        assert!(TrustedKeys::parse("ops").is_err());
        assert!(TrustedKeys::parse("ops:!!").is_err());
        assert!(TrustedKeys::parse("ops:AAAA").is_err());
        let (_, public) = pair(3);
        assert!(TrustedKeys::parse(&format!("a:{public}, b:{public}")).is_ok());
    }
}
