//! Just enough DER to read a certificate's subject common name, for etcd's rule that a
//! verified client certificate's common name is the user. Bounds-checked throughout: the
//! input is a certificate rustls has already verified, but nothing here trusts it.

/// The OID 2.5.4.3 (id-at-commonName), DER-encoded.
const COMMON_NAME_OID: &[u8] = &[0x55, 0x04, 0x03];

/// One TLV: its tag, and its contents.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The contents of the SEQUENCE at the start of `input`.
fn sequence(input: &[u8]) -> Option<&[u8]> {
    match tlv(input)? {
        (0x30, contents, _) => Some(contents),
        _ => None,
    }
}

/// The subject common name of a DER certificate, if it has one.
pub fn common_name(cert: &[u8]) -> Option<String> {
    let certificate = sequence(cert)?;
    let mut tbs = sequence(certificate)?;
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject.
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = tlv(tbs)?.2;
    }
    let mut rdns = sequence(tbs)?;
    let mut found = None;
    while !rdns.is_empty() {
        let (tag, set, rest) = tlv(rdns)?;
        rdns = rest;
        if tag != 0x31 {
            return None;
        }
        let mut attrs = set;
        while !attrs.is_empty() {
            let (tag, attr, rest) = tlv(attrs)?;
            attrs = rest;
            if tag != 0x30 {
                return None;
            }
            let (oid_tag, oid, value) = tlv(attr)?;
            if oid_tag == 0x06 && oid == COMMON_NAME_OID {
                let (_, text, _) = tlv(value)?;
                found = Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = common_name(&bytes);
        }
    }

    #[test]
    fn damaged_certificates_give_none() -> Result<(), crate::TlsError> {
        let ca = crate::DevCa::generate("t")?;
        let id = ca.issue("alice", &[])?;
        let der = id.leaf().map(|c| c.to_vec()).unwrap_or_default();
        assert_eq!(common_name(&der).as_deref(), Some("alice"));
        for cut in [0, 1, 5, der.len() / 2] {
            let _ = common_name(&der[..cut]);
        }
        let mut bad = der.clone();
        if let Some(b) = bad.get_mut(1) {
            *b = 0xff;
        }
        assert_eq!(common_name(&bad), None);
        Ok(())
    }
}
