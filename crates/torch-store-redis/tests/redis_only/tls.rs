//! `rediss://`: TLS through rustls (ring), trusting a CA given in the options.

use std::process::Command;

use torch_store::TaskStore;
use torch_store_redis::{RedisOptions, RedisStore};

use crate::redis_server::RedisServer;
use torch_store::conformance::{NOW, task, tid};

fn openssl(dir: &std::path::Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A CA and a server certificate for localhost, made with the `openssl` tool.
fn certificates(dir: &std::path::Path) -> bool {
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("write");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=torch test CA",
            ],
        ]
        .concat(),
    ) && openssl(
        dir,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    ) && openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca() {
    let certs = tempfile::tempdir().expect("tempdir");
    if !certificates(certs.path()) {
        eprintln!("skipped: the openssl tool is missing or failed");
        return;
    }
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
        .to_string();
    let file = |name: &str| certs.path().join(name).to_string_lossy().into_owned();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
    let Some(server) = RedisServer::start_or_skip(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]) else {
        return;
    };
    let _keep = server;
    let url = format!("rediss://localhost:{tls_port}/0");
    let opts = RedisOptions {
        tls_root_ca_pem: Some(std::fs::read(&ca).expect("read CA")),
        ..RedisOptions::default()
    };
    let s = RedisStore::open(&url, opts).await.expect("open over TLS");
    s.submit(vec![task(1, &[])], NOW).await.expect("submit");
    assert!(s.get_task(tid(1)).await.expect("get").is_some());

    // Without the CA the server's certificate is not trusted.
    let untrusted = RedisStore::open(&url, RedisOptions::default()).await;
    assert!(untrusted.is_err(), "connected without trusting the CA");
}
