//! Services a host provides to modules: a typed registry, a mailer and named secrets.
//!
//! Modules never build infrastructure themselves: a handler asks the [`Runtime`](crate::Runtime)
//! for a service by type (`rt.service::<Arc<dyn Mailer>>()`), and the host registers the real one
//! (an outbox file under the data directory) while tests register a [`MemoryMailer`].

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// A typed set of services, one value per type. Cheap to clone (values are shared).
#[derive(Clone, Default)]
pub struct Services {
    map: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("count", &self.map.len())
            .finish()
    }
}

impl Services {
    /// An empty registry.
    pub fn new() -> Services {
        Services::default()
    }

    /// Registers `value` as the service of type `T` (replacing an earlier one).
    pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) {
        self.map.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// The service of type `T`, when registered.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.map
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
            .cloned()
    }
}

/// An email to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// A key that identifies this email for deduplication downstream (e.g. `welcome:<user>`).
    pub idempotency_key: String,
}

/// Why an email could not be handed over.
#[derive(Debug, thiserror::Error)]
#[error("mailer failed: {0}")]
pub struct MailError(pub String);

/// Sends emails. Register one as `Arc<dyn Mailer>`.
pub trait Mailer: Send + Sync + 'static {
    /// Hands `email` over for delivery.
    fn send(&self, email: &Email) -> Result<(), MailError>;
}

/// A mailer appending one JSON line per email to a file (the default of the host: the outbox can
/// be inspected or forwarded by another process).
#[derive(Debug)]
pub struct OutboxMailer {
    path: PathBuf,
    lock: Mutex<()>,
}

impl OutboxMailer {
    /// A mailer writing to `path` (created on first send, with its parent directories).
    pub fn new(path: impl Into<PathBuf>) -> OutboxMailer {
        OutboxMailer {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    /// The outbox file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Mailer for OutboxMailer {
    fn send(&self, email: &Email) -> Result<(), MailError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| MailError(e.to_string()))?;
        }
        let mut line = serde_json::to_vec(email).map_err(|e| MailError(e.to_string()))?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| MailError(format!("{}: {e}", self.path.display())))?;
        f.write_all(&line).map_err(|e| MailError(e.to_string()))?;
        f.sync_data().map_err(|e| MailError(e.to_string()))
    }
}

/// A mailer keeping emails in memory (tests).
#[derive(Debug, Default, Clone)]
pub struct MemoryMailer {
    sent: Arc<Mutex<Vec<Email>>>,
}

impl MemoryMailer {
    /// An empty mailer.
    pub fn new() -> MemoryMailer {
        MemoryMailer::default()
    }

    /// Every email sent so far.
    pub fn sent(&self) -> Vec<Email> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Mailer for MemoryMailer {
    fn send(&self, email: &Email) -> Result<(), MailError> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(email.clone());
        Ok(())
    }
}

/// The shortest secret accepted, in bytes: a file holding a shorter one (an empty `users.token`,
/// say) is refused when it is loaded, so that no key is ever guessable.
pub const MIN_SECRET_LEN: usize = 32;

/// Named secrets (e.g. token signing keys), each at least [`MIN_SECRET_LEN`] random bytes.
///
/// [`Secrets::load_or_create`] keeps them in a file of the data directory, generated on first use
/// and readable by the owner only; [`Secrets::ephemeral`] keeps them in memory (tests).
#[derive(Clone)]
pub struct Secrets {
    file: Option<PathBuf>,
    values: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secret material.
        f.debug_struct("Secrets")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Why secrets could not be loaded or stored.
#[derive(Debug, thiserror::Error)]
#[error("secrets file {path}: {message}")]
pub struct SecretsError {
    /// The file.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

#[derive(Serialize, Deserialize, Default)]
struct SecretsFile {
    secrets: HashMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Secrets {
    /// Secrets kept only in memory, generated on first use.
    pub fn ephemeral() -> Secrets {
        Secrets {
            file: None,
            values: Arc::default(),
        }
    }

    /// Secrets stored in `file` (JSON, mode 0600), which is created when absent. A secret that is
    /// not hex or shorter than [`MIN_SECRET_LEN`] bytes is an error naming it and the file.
    pub fn load_or_create(file: impl Into<PathBuf>) -> Result<Secrets, SecretsError> {
        let file = file.into();
        let err = |message: String| SecretsError {
            path: file.display().to_string(),
            message,
        };
        let mut values = HashMap::new();
        match std::fs::read(&file) {
            Ok(bytes) => {
                let parsed: SecretsFile =
                    serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
                for (k, v) in parsed.secrets {
                    let v = unhex(&v).ok_or_else(|| err(format!("secret {k:?} is not hex")))?;
                    if v.len() < MIN_SECRET_LEN {
                        return Err(err(format!(
                            "secret {k:?} is {} bytes long, at least {MIN_SECRET_LEN} are \
                             required (remove the entry to have a new random one generated)",
                            v.len()
                        )));
                    }
                    values.insert(k, v);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e.to_string())),
        }
        let s = Secrets {
            file: Some(file.clone()),
            values: Arc::new(Mutex::new(values)),
        };
        Ok(s)
    }

    /// The secret called `name`, generated (32 random bytes) and persisted on first use.
    pub fn get(&self, name: &str) -> Result<Vec<u8>, SecretsError> {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = values.get(name) {
            return Ok(v.clone());
        }
        let mut v = Vec::with_capacity(32);
        while v.len() < 32 {
            v.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        v.truncate(32);
        values.insert(name.to_owned(), v.clone());
        if let Some(file) = &self.file {
            let err = |message: String| SecretsError {
                path: file.display().to_string(),
                message,
            };
            let data = SecretsFile {
                secrets: values.iter().map(|(k, v)| (k.clone(), hex(v))).collect(),
            };
            let json = serde_json::to_vec_pretty(&data).map_err(|e| err(e.to_string()))?;
            write_private(file, &json).map_err(|e| err(e.to_string()))?;
        }
        Ok(v)
    }
}

fn write_private(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = file.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_typed() {
        let mut s = Services::new();
        let m: Arc<dyn Mailer> = Arc::new(MemoryMailer::new());
        s.insert(m);
        s.insert(42u32);
        assert!(s.get::<Arc<dyn Mailer>>().is_some());
        assert_eq!(s.get::<u32>(), Some(42));
        assert_eq!(s.get::<u64>(), None);
    }

    #[test]
    fn secrets_persist_and_are_stable() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("secrets.json");
        let a = Secrets::load_or_create(&file)
            .and_then(|s| s.get("token"))
            .unwrap_or_default();
        assert_eq!(a.len(), 32);
        let b = Secrets::load_or_create(&file)
            .and_then(|s| s.get("token"))
            .unwrap_or_default();
        assert_eq!(a, b);
        let other = Secrets::load_or_create(&file)
            .and_then(|s| s.get("other"))
            .unwrap_or_default();
        assert_ne!(a, other);
        assert!(!format!("{:?}", Secrets::ephemeral()).contains("token"));
    }

    #[test]
    fn short_secrets_are_refused_with_their_name_and_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("secrets.json");
        for short in [String::new(), "ab".repeat(31)] {
            let json = format!(
                r#"{{"secrets":{{"users.token":"{short}","ok":"{}"}}}}"#,
                "cd".repeat(32)
            );
            std::fs::write(&file, json).unwrap_or_else(|e| panic!("{e}"));
            let e = Secrets::load_or_create(&file)
                .err()
                .unwrap_or_else(|| panic!("a {}-byte secret was accepted", short.len() / 2));
            let text = e.to_string();
            assert!(text.contains("\"users.token\""), "{text}");
            assert!(text.contains("secrets.json"), "{text}");
            assert!(text.contains("at least 32"), "{text}");
        }
        std::fs::write(
            &file,
            format!(r#"{{"secrets":{{"users.token":"{}"}}}}"#, "ab".repeat(32)),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = Secrets::load_or_create(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.get("users.token").unwrap_or_default(), vec![0xab; 32]);
    }

    #[test]
    fn outbox_appends_json_lines() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let m = OutboxMailer::new(dir.path().join("out/outbox.jsonl"));
        let e = Email {
            to: "a@b.c".into(),
            subject: "hi".into(),
            body: "x".into(),
            idempotency_key: "k".into(),
        };
        m.send(&e).unwrap_or_else(|e| panic!("{e}"));
        m.send(&e).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(m.path()).unwrap_or_default();
        assert_eq!(text.lines().count(), 2);
    }
}
