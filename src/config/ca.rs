//! A private certificate authority an e-mail channel trusts (`smtp.ca_file`): the PEM file is
//! read and checked when the tree is compiled — so lint reports a missing or broken one — and
//! read again whenever serve sends, so a renewed file is used without a new revision.

use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A CA file larger than this is refused (a bundle of every public CA is about 200 KiB).
const MAX_BYTES: u64 = 1024 * 1024;

/// The certificates in the PEM file at `path`: at least one, each one rustls accepts as a
/// trust anchor. The error says what is wrong, naming the file.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let size = std::fs::metadata(path).map_err(|e| format!("cannot read `{shown}`: {e}"))?.len();
    if size > MAX_BYTES {
        return Err(format!("`{shown}` is {size} bytes, more than a CA file's limit of {MAX_BYTES}"));
    }
    let pem = std::fs::read(path).map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`{shown}` is not a valid PEM file: {e}"))?;
    if certificates.is_empty() {
        return Err(format!("`{shown}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    let mut roots = rustls::RootCertStore::empty();
    for (n, certificate) in certificates.iter().enumerate() {
        roots.add(certificate.clone()).map_err(|e| format!("certificate {} in `{shown}` is not a usable CA certificate: {e}", n + 1))?;
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_empty_or_garbled_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = read_ca_file(&missing).unwrap_err();
        assert!(err.starts_with(&format!("cannot read `{}`", missing.display())), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert_eq!(
            read_ca_file(&empty).unwrap_err(),
            format!("`{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)", empty.display())
        );

        let garbled = dir.path().join("garbled.pem");
        std::fs::write(&garbled, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        let err = read_ca_file(&garbled).unwrap_err();
        assert!(err.starts_with(&format!("certificate 1 in `{}` is not a usable CA certificate", garbled.display())), "{err}");
    }
}
