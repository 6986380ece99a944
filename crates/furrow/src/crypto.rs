//! Secrets at rest: AES-256-GCM under a master key, the key id in every ciphertext so keys can
//! be rotated online (old ciphertexts stay readable until rewrapped).
//!
//! Ciphertext format: `enc:v1:{key id}:{base64(nonce ‖ ciphertext ‖ tag)}`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

const PREFIX: &str = "enc:v1:";
/// Name of the key file in the data dir: one base64 key per line, newest last.
pub const KEY_FILE: &str = "secret.keys";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the master key must be base64 of exactly 32 bytes")]
    BadKey,
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext was made with key {0}, which is not in the keyring")]
    UnknownKey(String),
    #[error("ciphertext failed authentication (wrong key or tampered)")]
    Tampered,
    #[error("key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

/// All known master keys; the last one encrypts. A keyring loaded from the key file reloads it
/// when it meets an unknown key id, so a rotation done by `furrow keys rotate` (or another
/// replica) is picked up online.
pub struct Keyring {
    keys: std::sync::RwLock<Vec<Arc<MasterKey>>>,
    source: Option<(Option<String>, PathBuf)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.read().iter().map(|k| k.id.clone()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

fn parse_key(b64: &str) -> Result<MasterKey, CryptoError> {
    let bytes = STANDARD
        .decode(b64.trim())
        .map_err(|_| CryptoError::BadKey)?;
    if bytes.len() != 32 {
        return Err(CryptoError::BadKey);
    }
    let id = hex8(&Sha256::digest(&bytes));
    Ok(MasterKey {
        id,
        cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
    })
}

fn hex8(digest: &[u8]) -> String {
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random key, base64.
pub fn generate_key() -> String {
    STANDARD.encode(Aes256Gcm::generate_key(OsRng))
}

fn read_key_file(path: &Path) -> Result<Vec<String>, CryptoError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(CryptoError::KeyFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Appends a key to the key file, creating it with mode 0600.
pub fn append_key(path: &Path, key_b64: &str) -> Result<(), CryptoError> {
    let err = |source| CryptoError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(err)?;
    writeln!(file, "{key_b64}").map_err(err)?;
    file.sync_all().map_err(err)
}

fn load_keys(
    env_key: Option<&str>,
    path: &Path,
    generate: bool,
) -> Result<Vec<Arc<MasterKey>>, CryptoError> {
    let mut encoded = Vec::new();
    if let Some(k) = env_key.filter(|k| !k.trim().is_empty()) {
        encoded.push(k.trim().to_string());
    }
    encoded.extend(read_key_file(path)?);
    if encoded.is_empty() && generate {
        let key = generate_key();
        append_key(path, &key)?;
        encoded.push(key);
    }
    let mut keys: Vec<Arc<MasterKey>> = Vec::new();
    for k in &encoded {
        let key = parse_key(k)?;
        if let Some(pos) = keys.iter().position(|e| e.id == key.id) {
            // A key listed again later becomes the newest.
            keys.remove(pos);
        }
        keys.push(Arc::new(key));
    }
    Ok(keys)
}

impl Keyring {
    /// From `FURROW_SECRET_KEY` (when set) and the key file. With neither, a key is generated
    /// into the key file (mode 0600). The newest key of the file encrypts; otherwise the env key.
    pub fn load(env_key: Option<&str>, data_dir: &Path) -> Result<Self, CryptoError> {
        let path = data_dir.join(KEY_FILE);
        let keys = load_keys(env_key, &path, true)?;
        Ok(Self {
            keys: std::sync::RwLock::new(keys),
            source: Some((env_key.map(str::to_string), path)),
        })
    }

    /// A keyring of the given base64 keys, newest last (tests, tools).
    pub fn from_keys(keys: &[&str]) -> Result<Self, CryptoError> {
        let keys = keys
            .iter()
            .map(|k| parse_key(k).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            keys: std::sync::RwLock::new(keys),
            source: None,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<MasterKey>>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads the key file (after a rotation elsewhere).
    pub fn reload(&self) -> Result<(), CryptoError> {
        if let Some((env, path)) = &self.source {
            let keys = load_keys(env.as_deref(), path, false)?;
            if !keys.is_empty() {
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
            }
        }
        Ok(())
    }

    pub fn current_key_id(&self) -> String {
        self.current().id.clone()
    }

    fn current(&self) -> Arc<MasterKey> {
        self.read()
            .last()
            .cloned()
            .expect("a keyring always holds a key")
    }

    fn find(&self, id: &str) -> Option<Arc<MasterKey>> {
        self.read().iter().find(|k| k.id == id).cloned()
    }

    pub fn encrypt(&self, plaintext: &str) -> String {
        let key = self.current();
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = key
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", key.id, STANDARD.encode(blob))
    }

    pub fn decrypt(&self, ciphertext: &str) -> Result<SecretString, CryptoError> {
        let rest = ciphertext
            .strip_prefix(PREFIX)
            .ok_or(CryptoError::Malformed)?;
        let (id, b64) = rest.split_once(':').ok_or(CryptoError::Malformed)?;
        let key = match self.find(id) {
            Some(key) => key,
            None => {
                self.reload()?;
                self.find(id)
                    .ok_or_else(|| CryptoError::UnknownKey(id.to_string()))?
            }
        };
        let blob = STANDARD.decode(b64).map_err(|_| CryptoError::Malformed)?;
        if blob.len() < 12 + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, sealed) = blob.split_at(12);
        let plain = key
            .cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| CryptoError::Tampered)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Malformed)
    }

    /// Whether a ciphertext is under the current key (rotation rewraps the others).
    pub fn is_current(&self, ciphertext: &str) -> bool {
        ciphertext
            .strip_prefix(PREFIX)
            .and_then(|r| r.split_once(':'))
            .is_some_and(|(id, _)| id == self.current().id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn round_trip_and_key_ids() {
        let (a, b) = (generate_key(), generate_key());
        let old = Keyring::from_keys(&[&a]).unwrap();
        let sealed = old.encrypt("refresh-token-value");
        assert!(!sealed.contains("refresh-token-value"));
        assert!(sealed.starts_with(&format!("enc:v1:{}:", old.current_key_id())));
        assert_eq!(
            old.decrypt(&sealed).unwrap().expose_secret(),
            "refresh-token-value"
        );
        // Two encryptions differ (random nonce).
        assert_ne!(old.encrypt("x"), old.encrypt("x"));

        let rotated = Keyring::from_keys(&[&a, &b]).unwrap();
        assert_eq!(
            rotated.decrypt(&sealed).unwrap().expose_secret(),
            "refresh-token-value"
        );
        assert!(!rotated.is_current(&sealed));
        assert!(rotated.is_current(&rotated.encrypt("y")));

        let other = Keyring::from_keys(&[&b]).unwrap();
        assert!(matches!(
            other.decrypt(&sealed),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let ring = Keyring::from_keys(&[&generate_key()]).unwrap();
        let sealed = ring.encrypt("secret");
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(ring.decrypt(&tampered).is_err());
        assert!(matches!(ring.decrypt("plain"), Err(CryptoError::Malformed)));
        assert!(Keyring::from_keys(&["c2hvcnQ="]).is_err());
    }

    #[test]
    fn key_file_is_generated_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("furrow-keys-{}", uuid::Uuid::new_v4()));
        let ring = Keyring::load(None, &dir).unwrap();
        let again = Keyring::load(None, &dir).unwrap();
        assert_eq!(ring.current_key_id(), again.current_key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
