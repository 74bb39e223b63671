//! TLS on a real 3-process cluster: both ports speak TLS only, clients must present a
//! certificate signed by the cluster's CA (`--client-cert-auth`), and so must peers
//! (`--peer-client-cert-auth`). A client without the CA, without a certificate or in clear text
//! is refused; `raftkv` and `etcdctl` with the right files work, through followers too (which
//! forward to the leader over TLS); a node whose peer certificate another CA signed is added by
//! its join but never receives a byte of the log.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::etcd::*;
use common::*;
use raftkv_server::tls::DevCa;
use serde_json::Value;

/// The certificate files of `name` in `dir` ([`DevCa::write`]'s layout).
fn cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    )
}

/// `raftkv serve` flags for TLS on both ports, client and peer certificates required.
fn tls_flags(
    client_ca: &Path,
    peer_ca: &Path,
    client: &Path,
    peer: &Path,
    name: &str,
) -> Vec<String> {
    let (client_cert, client_key) = cert(client, name);
    let (peer_cert, peer_key) = cert(peer, name);
    let mut flags = Vec::new();
    for (flag, path) in [
        ("--cert-file", client_cert),
        ("--key-file", client_key),
        ("--trusted-ca-file", client_ca.join("ca.pem")),
        ("--peer-cert-file", peer_cert),
        ("--peer-key-file", peer_key),
        ("--peer-trusted-ca-file", peer_ca.join("ca.pem")),
    ] {
        flags.push(flag.to_string());
        flags.push(path.display().to_string());
    }
    flags.push("--client-cert-auth".to_string());
    flags.push("--peer-client-cert-auth".to_string());
    flags
}

/// `raftkv ARGS --endpoints URL EXTRA`: (success, stdout, stderr).
fn raftkv_at(args: &[&str], url: &str, extra: &[String]) -> (bool, String, String) {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    raftkv(&[args, &["--endpoints", url], &extra].concat())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_cluster_refuses_clients_without_the_ca_and_peers_without_a_valid_certificate() {
    let root = tempfile::tempdir().unwrap();
    let certs = root.path().join("certs");
    let names = ["s1", "s2", "s3", "s4", "client"];
    DevCa::new("test CA")
        .unwrap()
        .write(&certs, &names)
        .unwrap();
    let rogue = root.path().join("rogue");
    DevCa::new("rogue CA")
        .unwrap()
        .write(&rogue, &["s4"])
        .unwrap();

    let mut nodes: Vec<Node> = names[..3]
        .iter()
        .map(|n| Node::new(root.path(), n))
        .collect();
    let spec: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}=https://{}", n.name, n.peer))
        .collect();
    let spec = spec.join(",");
    for node in nodes.iter_mut() {
        let mut flags = vec!["--initial-cluster".to_string(), spec.clone()];
        flags.extend(tls_flags(
            &certs,
            &certs,
            &certs,
            &certs,
            &node.name.clone(),
        ));
        node.start(&flags);
    }
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| format!("https://{}", n.client))
        .collect();
    let (client_cert, client_key) = cert(&certs, "client");
    let ca = certs.join("ca.pem");
    let with_cert: Vec<String> = [
        "--cacert",
        &ca.display().to_string(),
        "--cert",
        &client_cert.display().to_string(),
        "--key",
        &client_key.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    // With the CA and a client certificate: writes through every member, reads everywhere.
    eventually("a write over TLS", || async {
        raftkv_at(&["put", "secret", "v1"], &urls[1], &with_cert)
            .0
            .then_some(())
    })
    .await;
    for (i, url) in urls.iter().enumerate() {
        let (ok, out, err) = raftkv_at(&["put", &format!("k{i}"), "v"], url, &with_cert);
        assert!(ok, "put through {url}: {out}{err}");
    }
    let (ok, out, err) = raftkv_at(&["get", "secret"], &urls[2], &with_cert);
    assert!(ok && out.trim() == "v1", "{out}{err}");

    // Without the CA, the server's certificate is refused; without a client certificate, the
    // server refuses the client; in clear text, nothing answers.
    let (ok, _, err) = raftkv_at(&["get", "secret"], &urls[0], &[]);
    assert!(!ok && err.contains("UnknownIssuer"), "{err}");
    let ca_only = vec!["--cacert".to_string(), ca.display().to_string()];
    let (ok, out, err) = raftkv_at(&["get", "secret"], &urls[0], &ca_only);
    assert!(!ok, "a client without a certificate was served: {out}");
    assert!(err.contains("CertificateRequired"), "{err}");
    let plain = format!("http://{}", nodes[0].client);
    let (ok, out, _) = raftkv_at(&["get", "secret"], &plain, &[]);
    assert!(!ok, "a clear-text client was served: {out}");

    // etcdctl, with the same files: writes through a follower, reads; refused without them.
    let tls_args: Vec<String> = [
        ("--cacert", &ca),
        ("--cert", &client_cert),
        ("--key", &client_key),
    ]
    .iter()
    .map(|(flag, path)| format!("{flag}={}", path.display()))
    .collect();
    let mut args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
    args.extend(["put", "from-etcdctl", "yes"]);
    let (ok, out, err) = etcdctl_with(&urls[0], &args, "");
    assert!(ok && out.trim() == "OK", "{out}{err}");
    let mut args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
    args.extend(["get", "from-etcdctl", "--print-value-only"]);
    let (ok, out, err) = etcdctl_with(&urls[2], &args, "");
    assert!(ok && out.trim() == "yes", "{out}{err}");
    let (ok, out, _) = etcdctl_with(&urls[2], &[&tls_args[0], "get", "from-etcdctl"], "");
    assert!(
        !ok,
        "etcdctl without a client certificate was served: {out}"
    );

    // A node whose peer certificate the rogue CA signed: its join (on the client port, with a
    // valid client certificate) adds it as a learner, but no member accepts its peer
    // connections nor it theirs, so it never receives the log.
    let mut intruder = Node::new(root.path(), "s4");
    let mut flags = vec!["--join".to_string(), urls[0].clone()];
    flags.extend(tls_flags(&certs, &certs, &certs, &rogue, "s4"));
    intruder.start(&flags);
    let intruder_url = format!("https://{}", intruder.client);
    let (client_tls, _) =
        raftkv_server::tls::client_side(&ca, Some((&client_cert, &client_key))).unwrap();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(client_tls)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let status = |url: String| {
        let http = http.clone();
        async move {
            let response = http.get(format!("{url}/v1/status")).send().await.ok()?;
            response.json::<Value>().await.ok()
        }
    };
    let members = eventually("the rogue node's join", || async {
        let s = status(urls[0].clone()).await?;
        let members = s["members"].as_array()?.clone();
        (members.len() == 4).then_some(members)
    })
    .await;
    assert!(members.iter().any(|m| m["name"] == "s4"), "{members:?}");
    let (ok, out, err) = raftkv_at(&["put", "after-join", "v"], &urls[1], &with_cert);
    assert!(ok, "the cluster stopped serving: {out}{err}");
    tokio::time::sleep(ELECTION_TIMEOUT * 6).await;
    let seen = eventually("the rogue node's status", || status(intruder_url.clone())).await;
    assert_eq!(
        seen["applied_index"], 0,
        "the rogue node got the log: {seen}"
    );
    let leader = eventually("the leader's status", || async {
        for url in &urls {
            let s = status(url.clone()).await?;
            if s["role"] == "leader" {
                return Some(s);
            }
        }
        None
    })
    .await;
    assert!(leader["commit_index"].as_u64() > Some(3), "{leader}");
}
