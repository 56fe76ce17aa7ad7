//! `mangoctl cert`: a development CA and the certificates it issues (mango-tls's `DevCa`).

use std::path::Path;

use anyhow::Context as _;
use mango_tls::DevCa;

/// The CA's name (a CA loaded back is rebuilt with it).
const CA_NAME: &str = "mango development CA";

/// Makes the CA in `dir` unless it is there.
pub fn init(dir: &Path) -> anyhow::Result<()> {
    DevCa::load_or_create(dir, CA_NAME).with_context(|| format!("the CA in {}", dir.display()))?;
    println!("{}", dir.join("ca.crt").display());
    Ok(())
}

/// Issues `name`'s certificate for `hosts` (comma-separated) into `dir`.
pub fn issue(dir: &Path, name: &str, hosts: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "--name {name:?}: letters, digits, '-', '_' and '.' only"
    );
    let ca = DevCa::load_or_create(dir, CA_NAME)
        .with_context(|| format!("the CA in {}", dir.display()))?;
    let hosts: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(String::from)
        .collect();
    let (cert, key) = ca.issue_files(dir, name, name, &hosts)?;
    println!("{}\n{}", cert.display(), key.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_chain_to_the_ca_made_first() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        init(dir.path())?;
        issue(dir.path(), "v1", "10.1.1.1,node-1")?;
        let roots = mango_tls::Roots::from_pem_file(&dir.path().join("ca.crt"))?;
        let id = mango_tls::Identity::from_pem_files(
            &dir.path().join("v1.crt"),
            &dir.path().join("v1.key"),
        )?;
        let leaf = id.leaf().map(|c| c.as_ref().to_vec()).unwrap_or_default();
        assert!(mango_tls::valid_for_host(&leaf, "node-1"));
        assert_eq!(mango_tls::common_name(&leaf).as_deref(), Some("v1"));
        // A server with this identity and a client trusting the CA agree.
        mango_tls::server_config(&id, Some(&roots), &[], false)?;
        assert!(issue(dir.path(), "../x", "").is_err());
        Ok(())
    }
}
