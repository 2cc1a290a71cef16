//! `mazu-agent node` against a fake kubelet pods directory (real directory
//! layout, tokens from the development issuer written the way the kubelet's
//! atomic writer does), the real `mazu-curator` process and a real Envoy
//! 1.40 taking each pod's certificate over SDS from the pod's own socket.
//! Also `mazu-agent wait-socket`'s exit codes. Every process is killed on
//! drop.

mod common;

use core::time::Duration;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Instant;

use common::Curator;
use common::{
    AgentProcess, SdsEnvoy, agent_command, id_of, mint, mint_with, mode, registry, registry_entry,
    spki_hash_of_pem, write_projected_token,
};
use mazu_agent::state::Status;
use mazu_testkit::fixtures::Mesh;
use mazu_testkit::net::echo_server;

const WAIT: Duration = Duration::from_secs(60);

/// The fake node: `pods/`, `state/`, `sockets/` in one temporary directory.
struct FakeNode {
    dir: tempfile::TempDir,
}

impl FakeNode {
    fn new() -> Self {
        let node = FakeNode {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::create_dir(node.pods()).expect("pods dir");
        node
    }

    fn pods(&self) -> PathBuf {
        self.dir.path().join("pods")
    }

    fn state_root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn socket_root(&self) -> PathBuf {
        self.dir.path().join("sockets")
    }

    /// A pod directory as the kubelet lays it out, with the projected Mazu
    /// token, or without any token when `token` is `None`.
    fn add_pod(&self, uid: &str, token: Option<&str>) {
        let pod = self.pods().join(uid);
        std::fs::create_dir_all(pod.join("volumes/kubernetes.io~empty-dir")).expect("pod dir");
        if let Some(token) = token {
            write_projected_token(
                &pod.join("volumes/kubernetes.io~projected/mazu-token"),
                token,
            );
        }
    }

    fn remove_pod(&self, uid: &str) {
        std::fs::remove_dir_all(self.pods().join(uid)).expect("remove pod dir");
    }

    fn status(&self, uid: &str) -> Option<Status> {
        let bytes = std::fs::read(self.state_root().join(uid).join("status.json")).ok()?;
        Status::parse(&bytes).ok()
    }

    fn socket(&self, uid: &str) -> PathBuf {
        self.socket_root().join(uid).join("socket")
    }

    fn start(&self, curator: &common::FixedCurator, extra: &[&str]) -> AgentProcess {
        AgentProcess::start_node(
            &format!("http://127.0.0.1:{}", curator.port),
            &self.pods(),
            &self.state_root(),
            &self.socket_root(),
            extra,
        )
    }
}

/// Waits until `done` holds, failing with the node agent's log.
fn wait_until(agent: &mut AgentProcess, what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(agent.running(), "the node agent exited:\n{}", agent.log());
        assert!(
            start.elapsed() < WAIT,
            "not true after {WAIT:?}: {what}\n{}",
            agent.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn wait_status(node: &FakeNode, agent: &mut AgentProcess, uid: &str) -> Status {
    wait_until(agent, &format!("pod {uid} registered"), || {
        node.status(uid).is_some()
    });
    node.status(uid).expect("status")
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

const POD_A: &str = "0b6f7c2e-8a43-4f5e-9d1c-3c2b1a0f9e8d";
const POD_B: &str = "5f1d3c70-2b9e-4c8a-a6f4-7e0d9b8c1a23";
const POD_C: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
const POD_REFUSED: &str = "c0ffee00-1111-4222-8333-444455556666";
const POD_NO_TOKEN: &str = "d41d8cd98f00b204e9800998ecf8427e";
const POD_CORRUPT: &str = "e1e2e3e4-0000-4111-8222-333344445555";

#[test]
fn node_serves_each_pod_on_its_own_socket_and_follows_the_pods_directory() {
    let mesh = Mesh::new();
    let curator = Curator::start(&mesh).expect("curator");
    let node = FakeNode::new();
    let token_a = mint(&mesh, "shop", "cart");
    let token_b = mint(&mesh, "shop", "pay");
    node.add_pod(POD_A, Some(&token_a));
    node.add_pod(POD_B, Some(&token_b));
    // A token for another audience: the curator refuses it for good.
    let refused = mint_with(&mesh, "shop", "intruder", |r| {
        r.audiences = vec!["istio-ca".to_owned()];
    });
    node.add_pod(POD_REFUSED, Some(&refused));
    // Ignored: a pod without the Mazu token volume, and directories whose
    // names are not pod uids (even with a token in the right place).
    node.add_pod(POD_NO_TOKEN, None);
    node.add_pod("Not-A-Pod", Some(&mint(&mesh, "shop", "odd")));
    node.add_pod(".hidden", Some(&mint(&mesh, "shop", "odd")));
    // A pod whose state directory is corrupt: its agent cannot start (retried
    // with backoff), and nobody else notices.
    node.add_pod(POD_CORRUPT, Some(&mint(&mesh, "shop", "broken")));
    let corrupt_state = node.state_root().join(POD_CORRUPT);
    std::fs::create_dir_all(&corrupt_state).expect("state dir");
    std::fs::write(corrupt_state.join("crs.bin"), b"not a CRS").expect("write");

    // Our own uid as the socket owner: exercises the chown without root.
    let me = std::fs::metadata(node.dir.path()).expect("metadata").uid();
    let owner = me.to_string();
    let mut agent = node.start(&curator, &["--socket-owner", &owner]);

    let status_a = wait_status(&node, &mut agent, POD_A);
    let status_b = wait_status(&node, &mut agent, POD_B);
    assert_eq!(status_a.id, id_of(&token_a));
    assert_eq!(status_b.id, id_of(&token_b));
    assert_eq!(status_a.spiffe_id, "spiffe://cluster.local/ns/shop/sa/cart");
    assert_eq!(status_b.spiffe_id, "spiffe://cluster.local/ns/shop/sa/pay");
    for status in [&status_a, &status_b] {
        let entry = registry_entry(curator.port, &status.id).expect("registered");
        assert_eq!(entry["spki_hash"], status.spki_hash);
    }
    assert_eq!(mode(&node.state_root().join(POD_A)), 0o700);
    assert_eq!(mode(&node.socket_root().join(POD_A)), 0o711);
    assert_eq!(mode(&node.socket(POD_A)), 0o600);
    assert_eq!(
        std::fs::symlink_metadata(node.socket(POD_A))
            .expect("socket")
            .uid(),
        me
    );

    // The refused pod: its agent gave up on that token, the others serve.
    agent.wait_log(WAIT, "cannot register this token");
    assert!(node.status(POD_REFUSED).is_none());
    // Bound (a bind carries no token) but the curator refused the reveal.
    assert!(
        !common::revealed(curator.port, &id_of(&refused)),
        "a refused token is not registered"
    );
    assert!(
        is_socket(&node.socket(POD_REFUSED)),
        "the refused pod still has its socket (its agent keeps watching the token)"
    );
    // node.json lists the served pods (the DaemonSet's probes read it).
    let state_root = node.state_root();
    let state_arg = state_root.to_str().expect("utf-8");
    let listed = [POD_A, POD_B, POD_REFUSED, POD_CORRUPT];
    wait_until(&mut agent, "node.json lists every pod with a token", || {
        let out = agent_command(&["node-status", "--state-root", state_arg]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success() && listed.iter().all(|p| text.contains(p))
    });
    let out = agent_command(&["node-status", "--state-root", state_arg]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("node.json");
    assert_eq!(
        status["retrying"],
        serde_json::json!([POD_CORRUPT]),
        "{status}"
    );
    assert!(
        agent
            .log()
            .lines()
            .any(|l| l.contains("cannot serve the pod") && l.contains(POD_CORRUPT)),
        "{}",
        agent.log()
    );
    assert!(!is_socket(&node.socket(POD_CORRUPT)));
    // Nothing for the pod without a token or the odd directories.
    for ignored in [POD_NO_TOKEN, "Not-A-Pod", ".hidden"] {
        assert!(!node.state_root().join(ignored).exists(), "{ignored}");
        assert!(!node.socket_root().join(ignored).exists(), "{ignored}");
    }

    // Real Envoy: each listener's certificate comes over SDS from that
    // pod's socket, and it is that pod's registered certificate.
    let echo = echo_server().expect("echo");
    let mut envoy = SdsEnvoy::start(&[node.socket(POD_A), node.socket(POD_B)], echo.port, false);
    envoy.wait_listeners_active(WAIT);
    for (i, status) in [&status_a, &status_b].into_iter().enumerate() {
        let presented = envoy.presented_certificate(i, None);
        assert_eq!(
            spki_hash_of_pem(&presented),
            status.spki_hash,
            "listener {i} presents its own pod's certificate"
        );
    }
    drop(envoy);

    // A pod that appears later is served within a scan.
    let token_c = mint(&mesh, "shop", "ship");
    node.add_pod(POD_C, Some(&token_c));
    let status_c = wait_status(&node, &mut agent, POD_C);
    assert_eq!(status_c.id, id_of(&token_c));
    assert!(registry_entry(curator.port, &status_c.id).is_some());
    wait_until(&mut agent, "pod C's socket", || {
        is_socket(&node.socket(POD_C))
    });

    // A pod the kubelet removed: its agent stops, its registration is
    // released (its slot serves other pods), its socket and state go.
    let id_b = node.status(POD_B).expect("B").id;
    assert!(registry_entry(curator.port, &id_b).is_some());
    node.remove_pod(POD_B);
    wait_until(&mut agent, "pod B's directories removed", || {
        !node.state_root().join(POD_B).exists() && !node.socket_root().join(POD_B).exists()
    });
    assert!(
        registry_entry(curator.port, &id_b).is_none(),
        "pod B's registration was not released"
    );
    assert!(
        agent
            .log()
            .lines()
            .any(|l| l.contains("released the registration of a removed pod") && l.contains(POD_B)),
        "{}",
        agent.log()
    );
    assert!(
        agent
            .log()
            .lines()
            .any(|l| l.contains("stopped serving the pod") && l.contains(POD_B)),
        "{}",
        agent.log()
    );
    // The others are untouched.
    assert!(is_socket(&node.socket(POD_A)));
    assert_eq!(node.status(POD_A).expect("A").id, status_a.id);

    // Restart: every pod is restored from its state, nothing registers again.
    let version_before = registry(curator.port)["version"].clone();
    assert_eq!(agent.terminate(), Some(0));
    assert!(
        !is_socket(&node.socket(POD_A)),
        "sockets are removed on exit"
    );
    assert!(
        node.socket_root().join(POD_A).is_dir(),
        "socket directories stay: running pods have them mounted"
    );
    drop(agent);
    let mut again = node.start(&curator, &["--socket-owner", &owner]);
    wait_until(&mut again, "pods A and C served again", || {
        is_socket(&node.socket(POD_A)) && is_socket(&node.socket(POD_C))
    });
    let start = Instant::now();
    while again.log().matches("not registering again").count() < 2 {
        assert!(again.running(), "the node agent exited:\n{}", again.log());
        assert!(
            start.elapsed() < WAIT,
            "both restored registrations not confirmed:\n{}",
            again.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        registry(curator.port)["version"],
        version_before,
        "no new registration"
    );
    assert!(!again.log().contains("reserved a slot"));
    let restored_a = node.status(POD_A).expect("A");
    assert_eq!(restored_a.id, status_a.id);
    assert_eq!(restored_a.registered_version, status_a.registered_version);
    assert_eq!(restored_a.spki_hash, status_a.spki_hash);
    assert_eq!(again.terminate(), Some(0));

    // A node agent that stopped scanning: node-status fails once node.json is stale.
    thread::sleep(Duration::from_millis(1100));
    let out = agent_command(&[
        "node-status",
        "--state-root",
        state_arg,
        "--max-age-secs",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn node_refuses_unsafe_settings() {
    let node = FakeNode::new();
    let pods = node.pods();
    let state = node.state_root();
    let base = [
        "node",
        "--curator",
        "http://127.0.0.1:1",
        "--pods-dir",
        pods.to_str().expect("utf-8"),
        "--state-root",
        state.to_str().expect("utf-8"),
    ];
    for bad in [
        ["--token-path", "../../etc/shadow"],
        ["--token-path", "/etc/shadow"],
        ["--token-volume", "../x"],
        ["--socket-owner", "istio"],
    ] {
        let args: Vec<&str> = base.iter().copied().chain(bad).collect();
        let out = agent_command(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
    }
}

#[test]
fn wait_socket_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("socket");
    let path_arg = path.to_str().expect("utf-8");

    // Nothing there: exit 1 after the timeout.
    let start = Instant::now();
    let out = agent_command(&["wait-socket", "--path", path_arg, "--timeout-secs", "1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not accept a connection"));

    // A socket file nobody listens on (what a crashed server leaves): exit 1.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(is_socket(&path));
    let out = agent_command(&["wait-socket", "--path", path_arg, "--timeout-secs", "1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    std::fs::remove_file(&path).expect("remove");

    // A listener that appears while it waits: exit 0.
    let child = std::process::Command::new(common::AGENT)
        .args(["wait-socket", "--path", path_arg, "--timeout-secs", "30"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wait-socket");
    let mut child = KillOnDrop(child);
    thread::sleep(Duration::from_millis(500));
    let _listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            start.elapsed() < WAIT,
            "wait-socket did not notice the socket"
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));

    // Missing --path: a usage error.
    assert_eq!(agent_command(&["wait-socket"]).status.code(), Some(2));
    // node-status without any node.json: exit 1.
    let out = agent_command(&["node-status", "--state-root", path_arg]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
