//! Throwaway certificates for the tests' TLS (the agent's HTTPS API,
//! etcd): a CA and leaf certificates it signs, made with Debian's
//! `openssl` in a directory the caller owns.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA in `dir`.
pub struct Ca {
    dir: PathBuf,
    pub cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("run openssl (Debian package openssl)")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

const KEY: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

impl Ca {
    /// A new CA named `name` (its files are `<name>.pem`, `<name>.key`).
    pub fn new(dir: &Path, name: &str) -> Result<Self> {
        let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
        let subj = format!("/CN={name}");
        let mut args = vec!["req", "-x509"];
        args.extend(KEY);
        args.extend(["-days", "2", "-subj", &subj, "-keyout", &key, "-out", &cert]);
        openssl(dir, &args)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cert: dir.join(cert),
            key: dir.join(key),
        })
    }

    /// A leaf `name` with common name `cn`, subject alternative names
    /// `sans` (`IP:10.0.0.1`, `DNS:x`), for servers and clients alike.
    pub fn issue(&self, name: &str, cn: &str, sans: &[&str]) -> Result<Pair> {
        let (cert, key, csr, ext) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        let subj = format!("/CN={cn}");
        let mut args = vec!["req"];
        args.extend(KEY);
        args.extend(["-subj", &subj, "-keyout", &key, "-out", &csr]);
        openssl(&self.dir, &args)?;
        std::fs::write(
            self.dir.join(&ext),
            format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\n",
                sans.join(",")
            ),
        )?;
        let (ca_cert, ca_key) = (
            self.cert.to_string_lossy().into_owned(),
            self.key.to_string_lossy().into_owned(),
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
        )?;
        Ok(Pair {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        })
    }
}
