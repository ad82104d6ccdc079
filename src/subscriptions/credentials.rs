//! `credential('NAME')` in templates: resolved at delivery time from the
//! worker's environment (`HERALD_CREDENTIAL_NAME`) or from the file
//! `<credentials.dir>/NAME` (a mounted Kubernetes Secret, read on each use so
//! an updated Secret is picked up without a restart). A value is never
//! stored, logged or shown; only the name appears in errors.

use std::{fmt, path::PathBuf};

/// Where credentials come from.
#[derive(Debug, Clone)]
pub struct Credentials {
    dir: PathBuf,
}

/// A credential's value: `Debug` and `Display` never show it.
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Retryable: the operator may mount the secret later.
    #[error("missing_credential: {0}")]
    Missing(String),
    /// Permanent: a name no secret can ever have is a bug in the template.
    #[error("credential name {0:?} must be 1-128 of A-Z, a-z, 0-9 and '_'")]
    BadName(String),
}

/// Prefix of the environment variables credentials are read from.
pub const ENV_PREFIX: &str = "HERALD_CREDENTIAL_";

impl Credentials {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn resolve(&self, name: &str) -> Result<Secret, CredentialError> {
        check_name(name)?;
        if let Ok(value) = std::env::var(format!("{ENV_PREFIX}{name}")) {
            return Ok(Secret(value));
        }
        // Kubernetes Secret files usually end with a newline nobody meant to send.
        match std::fs::read_to_string(self.dir.join(name)) {
            Ok(value) => Ok(Secret(value.trim_end_matches(['\n', '\r']).to_owned())),
            Err(_) => Err(CredentialError::Missing(name.to_owned())),
        }
    }
}

/// Names become file names and variable names: no path tricks.
pub fn check_name(name: &str) -> Result<(), CredentialError> {
    let ok = (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CredentialError::BadName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_credential_is_read_on_each_use_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let creds = Credentials::new(dir.path());
        assert_eq!(
            creds.resolve("TOKEN_T1").unwrap_err(),
            CredentialError::Missing("TOKEN_T1".into())
        );
        std::fs::write(dir.path().join("TOKEN_T1"), "first\n").unwrap();
        assert_eq!(creds.resolve("TOKEN_T1").unwrap().expose(), "first");
        std::fs::write(dir.path().join("TOKEN_T1"), "second").unwrap();
        assert_eq!(creds.resolve("TOKEN_T1").unwrap().expose(), "second");
    }

    #[test]
    fn names_cannot_walk_out_of_the_directory() {
        let creds = Credentials::new("/tmp");
        for bad in ["../etc/passwd", "a/b", "", "x y"] {
            assert!(
                matches!(creds.resolve(bad), Err(CredentialError::BadName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_secret_never_shows_in_debug() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "Secret(***)");
    }
}
