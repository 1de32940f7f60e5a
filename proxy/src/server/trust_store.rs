//! Where OpenSSL finds the CA certificates that upstream TLS is verified against.
//!
//! Pingora builds three TLS client contexts at start (one for HTTP/1, two for HTTP/2) and
//! OpenSSL parses the whole system bundle into each: about 0.75 MB apiece, held for the
//! life of the process whether or not any upstream speaks TLS. The same certificates sit
//! one per file in the system's hashed directory, which OpenSSL reads on demand: a root is
//! loaded when a handshake needs it. So when that directory holds every certificate of the
//! bundle, the gateway points OpenSSL at the directory alone. The trusted set is the same
//! (OpenSSL consults the bundle and the directory together, and the directory already
//! holds all of the bundle); otherwise nothing changes.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use openssl::x509::X509;

const CERT_FILE: &str = "SSL_CERT_FILE";
const CERT_DIR: &str = "SSL_CERT_DIR";
/// A file that exists and holds no certificate: Pingora's probe replaces a bundle path
/// that does not exist with the system's bundle.
const NO_BUNDLE: &str = "/dev/null";

/// What [`read_roots_on_demand`] decided, for the log once logging is up.
#[derive(Debug, PartialEq, Eq)]
pub enum Roots {
    /// `SSL_CERT_FILE` now names no bundle and `SSL_CERT_DIR` this directory.
    OnDemand { dir: PathBuf, certificates: usize },
    /// The bundle stays, loaded whole, for this reason.
    Bundle {
        bundle: Option<PathBuf>,
        reason: String,
    },
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::OnDemand { dir, certificates } => write!(
                f,
                "CA certificates for upstream TLS: read from {} when a handshake needs them \
                 (it holds all {certificates} of the bundle's)",
                dir.display()
            ),
            Roots::Bundle {
                bundle: Some(bundle),
                reason,
            } => write!(
                f,
                "CA certificates for upstream TLS: {} loaded whole ({reason})",
                bundle.display()
            ),
            Roots::Bundle {
                bundle: None,
                reason,
            } => write!(f, "CA certificates for upstream TLS: {reason}"),
        }
    }
}

/// Points OpenSSL at the hashed directory instead of the bundle when that keeps the trusted
/// set. It sets environment variables, so call it first thing in `main`, before any thread
/// starts.
pub fn read_roots_on_demand() -> Roots {
    // The bundle and directory Pingora would hand to OpenSSL (the variables first, then
    // the system's usual places).
    let probed = openssl_probe::probe();
    let roots = choose(probed.cert_file.as_deref(), probed.cert_dir.as_deref());
    if let Roots::OnDemand { dir, .. } = &roots {
        #[allow(unsafe_code)]
        // SAFETY: called at the top of `main`, while the process has one thread.
        unsafe {
            std::env::set_var(CERT_FILE, NO_BUNDLE);
            std::env::set_var(CERT_DIR, dir);
        }
    }
    roots
}

fn choose(bundle: Option<&Path>, dir: Option<&Path>) -> Roots {
    let keep = |reason: &str| Roots::Bundle {
        bundle: bundle.map(Path::to_path_buf),
        reason: reason.to_string(),
    };
    let Some(bundle) = bundle else {
        return keep("no bundle found");
    };
    let Some(dir) = dir else {
        return keep("no hashed directory found");
    };
    let certificates = match std::fs::read(bundle).map(|pem| X509::stack_from_pem(&pem)) {
        Ok(Ok(certificates)) if !certificates.is_empty() => certificates,
        _ => return keep("no certificate read from it"),
    };
    let missing = certificates
        .iter()
        .filter(|cert| !hashed_in(dir, cert))
        .count();
    if missing > 0 {
        return keep(&format!(
            "{missing} of its certificates are not in {}",
            dir.display()
        ));
    }
    Roots::OnDemand {
        dir: dir.to_path_buf(),
        certificates: certificates.len(),
    }
}

/// Whether `dir` holds `cert` under OpenSSL's name for it: the subject's hash, a dot and a
/// sequence number for subjects that share a hash.
fn hashed_in(dir: &Path, cert: &X509) -> bool {
    let Ok(der) = cert.to_der() else { return false };
    let hash = cert.subject_name_hash();
    (0..)
        .map_while(|n| std::fs::read(dir.join(format!("{hash:08x}.{n}"))).ok())
        .any(|pem| {
            X509::from_pem(&pem)
                .and_then(|found| found.to_der())
                .is_ok_and(|found| found == der)
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tollgate_testkit::tls::self_signed;

    fn pem(certs: &[&X509]) -> Vec<u8> {
        certs.iter().flat_map(|c| c.to_pem().unwrap()).collect()
    }

    fn link(dir: &Path, cert: &X509, n: u32) {
        let name = format!("{:08x}.{n}", cert.subject_name_hash());
        std::fs::write(dir.join(name), cert.to_pem().unwrap()).unwrap();
    }

    /// A bundle of `certs` and an empty directory beside it.
    fn bundle_and_dir(tmp: &Path, certs: &[&X509]) -> (PathBuf, PathBuf) {
        let bundle = tmp.join("bundle.pem");
        std::fs::write(&bundle, pem(certs)).unwrap();
        let dir = tmp.join("certs");
        std::fs::create_dir(&dir).unwrap();
        (bundle, dir)
    }

    #[test]
    fn a_directory_holding_the_whole_bundle_is_read_on_demand() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (self_signed("root a", 1).0, self_signed("root b", 1).0);
        let (bundle, dir) = bundle_and_dir(tmp.path(), &[&a, &b]);
        link(&dir, &a, 0);
        link(&dir, &b, 0);
        assert_eq!(
            choose(Some(&bundle), Some(&dir)),
            Roots::OnDemand {
                dir,
                certificates: 2
            }
        );
    }

    #[test]
    fn the_bundle_stays_when_the_directory_misses_one_of_its_certificates() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (self_signed("root a", 1).0, self_signed("root b", 1).0);
        let (bundle, dir) = bundle_and_dir(tmp.path(), &[&a, &b]);
        link(&dir, &a, 0);
        // Another certificate under b's name is not b.
        link(&dir, &self_signed("root b", 1).0, 0);
        let roots = choose(Some(&bundle), Some(&dir));
        assert!(
            matches!(&roots, Roots::Bundle { reason, .. } if reason.starts_with("1 of its")),
            "{roots:?}"
        );
        // Under the next sequence number (subjects sharing a hash) it is found.
        link(&dir, &b, 1);
        assert!(matches!(
            choose(Some(&bundle), Some(&dir)),
            Roots::OnDemand {
                certificates: 2,
                ..
            }
        ));
    }

    #[test]
    fn no_bundle_no_directory_or_an_unreadable_bundle_change_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let a = self_signed("root a", 1).0;
        let (bundle, dir) = bundle_and_dir(tmp.path(), &[&a]);
        link(&dir, &a, 0);
        let unchanged = |roots: Roots| matches!(roots, Roots::Bundle { .. });
        assert!(unchanged(choose(None, Some(&dir))));
        assert!(unchanged(choose(Some(&bundle), None)));
        assert!(unchanged(choose(
            Some(&tmp.path().join("nonexistent")),
            Some(&dir)
        )));
        std::fs::write(&bundle, b"not a certificate").unwrap();
        assert!(unchanged(choose(Some(&bundle), Some(&dir))));
    }
}
