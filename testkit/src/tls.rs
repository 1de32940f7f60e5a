//! Self-signed certificates for 127.0.0.1 and localhost, made on the spot.

use openssl::{
    asn1::{Asn1Integer, Asn1Time},
    bn::BigNum,
    ec::{EcGroup, EcKey},
    error::ErrorStack,
    hash::MessageDigest,
    nid::Nid,
    pkey::{PKey, Private},
    x509::{X509, X509NameBuilder, extension::SubjectAlternativeName},
};

/// A self-signed P-256 certificate named `common_name`, valid for two days for 127.0.0.1
/// and localhost, with `serial`; and its key.
pub fn self_signed(common_name: &str, serial: u32) -> (X509, PKey<Private>) {
    #[allow(clippy::expect_used)] // test helper: a failure here is the test's failure
    build(common_name, serial).expect("making a self-signed certificate")
}

fn build(common_name: &str, serial: u32) -> Result<(X509, PKey<Private>), ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", common_name)?;
    let name = name.build();
    let mut cert = X509::builder()?;
    cert.set_version(2)?;
    let serial = Asn1Integer::from_bn(BigNum::from_u32(serial)?.as_ref())?;
    cert.set_serial_number(&serial)?;
    cert.set_subject_name(&name)?;
    cert.set_issuer_name(&name)?;
    cert.set_pubkey(&key)?;
    let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(2)?);
    cert.set_not_before(&not_before)?;
    cert.set_not_after(&not_after)?;
    // The address also as a DNS name: Pingora checks an upstream's name as one, even when
    // it is an address.
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .dns("127.0.0.1")
        .dns("localhost")
        .build(&cert.x509v3_context(None, None))?;
    cert.append_extension(san)?;
    cert.sign(&key, MessageDigest::sha256())?;
    Ok((cert.build(), key))
}
