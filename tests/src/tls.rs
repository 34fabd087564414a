//! A throw-away certificate authority made at test time with the system's `openssl` (Debian's
//! `openssl` package; nothing downloaded): a CA certificate and a server certificate for
//! `127.0.0.1` / `localhost` signed by it, as PEM files in a temporary folder.

use crate::servers::{temp_dir, TlsFiles};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A test CA and one server certificate signed by it. The folder is removed on drop.
pub struct TestCa {
    pub dir: PathBuf,
    pub files: TlsFiles,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// Makes the CA (`ca.pem`) and the server certificate (`server.pem`, `server.key`).
    pub fn new(name: &str) -> TestCa {
        let dir = temp_dir("tls");
        let subj = format!("/CN=tidemark test CA {name}");
        openssl(
            &dir,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", "ca.key",
                "-out", "ca.pem", "-subj", &subj,
            ],
        );
        std::fs::write(
            dir.join("san.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("write san.ext");
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                "server.pem",
            ],
        );
        let files = TlsFiles {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            ca: dir.join("ca.pem"),
        };
        TestCa { dir, files }
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
