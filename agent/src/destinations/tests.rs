//! The derivation and the merge, on objects shaped like the API server's.

use serde_json::json;

use super::*;

fn service(namespace: &str, name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": namespace, "uid": format!("svc-{name}") },
        "spec": { "type": "ClusterIP", "ports": [{ "port": 80 }] }
    }))
    .expect("a Service")
}

/// A slice of `service` with one endpoint per (pod name, pod uid).
fn slice(namespace: &str, service: &str, pods: &[(&str, &str)]) -> EndpointSlice {
    let endpoints: Vec<_> = pods
        .iter()
        .map(|(name, uid)| {
            json!({
                "addresses": ["10.0.0.1"],
                "conditions": { "ready": true },
                "targetRef": { "kind": "Pod", "namespace": namespace, "name": name, "uid": uid }
            })
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("{service}-abcde"),
            "namespace": namespace,
            "labels": { "kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io" }
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{ "port": 8080 }]
    }))
    .expect("an EndpointSlice")
}

fn pod(namespace: &str, name: &str, uid: &str, service_account: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": namespace, "uid": uid },
        "spec": { "serviceAccountName": service_account, "containers": [{ "name": "app" }] }
    }))
    .expect("a Pod")
}

fn derive_local(view: &ClusterView) -> Destinations {
    derive(view, "cluster.local", "cluster.local")
}

#[test]
fn a_service_with_pods_of_two_service_accounts_lists_both_sorted_once() {
    let view = ClusterView {
        services: vec![service("shop", "checkout")],
        slices: vec![
            slice("shop", "checkout", &[("c-1", "u1"), ("c-2", "u2")]),
            slice("shop", "checkout", &[("c-3", "u3")]),
        ],
        pods: vec![
            pod("shop", "c-1", "u1", "checkout"),
            pod("shop", "c-2", "u2", "checkout"),
            pod("shop", "c-3", "u3", "canary"),
        ],
    };
    let derived = derive_local(&view);
    assert_eq!(
        derived,
        Destinations::from([(
            "checkout.shop.svc.cluster.local".to_owned(),
            vec![
                "spiffe://cluster.local/ns/shop/sa/canary".to_owned(),
                "spiffe://cluster.local/ns/shop/sa/checkout".to_owned(),
            ]
        )])
    );
    // The trust domain and cluster domain are the ones given.
    let other = derive(&view, "example.org", "corp.internal");
    assert_eq!(
        other
            .get("checkout.shop.svc.corp.internal")
            .map(Vec::as_slice),
        Some(
            &[
                "spiffe://example.org/ns/shop/sa/canary".to_owned(),
                "spiffe://example.org/ns/shop/sa/checkout".to_owned()
            ][..]
        )
    );
}

#[test]
fn endpoints_whose_pod_is_missing_or_replaced_count_for_nothing() {
    let view = ClusterView {
        services: vec![service("shop", "checkout"), service("shop", "cart")],
        slices: vec![
            // c-1 is in the pod list; c-gone is not.
            slice("shop", "checkout", &[("c-1", "u1"), ("c-gone", "u9")]),
            // The pod named c-old exists under another uid (recreated).
            slice("shop", "cart", &[("c-old", "old-uid")]),
        ],
        pods: vec![
            pod("shop", "c-1", "u1", "checkout"),
            pod("shop", "c-old", "new-uid", "intruder"),
            // A pod of the same name in another namespace is not it.
            pod("other", "c-gone", "u9", "intruder"),
        ],
    };
    let derived = derive_local(&view);
    assert_eq!(
        derived,
        Destinations::from([(
            "checkout.shop.svc.cluster.local".to_owned(),
            vec!["spiffe://cluster.local/ns/shop/sa/checkout".to_owned()]
        )])
    );
}

#[test]
fn slices_of_another_service_or_namespace_do_not_leak() {
    let view = ClusterView {
        services: vec![service("shop", "checkout"), service("shop", "cart")],
        slices: vec![
            slice("shop", "cart", &[("cart-1", "u1")]),
            // A slice named after checkout but in another namespace.
            slice("evil", "checkout", &[("e-1", "u2")]),
            // A slice without the service-name label.
            serde_json::from_value(json!({
                "metadata": { "name": "x", "namespace": "shop" },
                "endpoints": [{ "targetRef": { "kind": "Pod", "name": "c-1", "uid": "u3" } }]
            }))
            .expect("a slice"),
        ],
        pods: vec![
            pod("shop", "cart-1", "u1", "cart"),
            pod("evil", "e-1", "u2", "evil"),
            pod("shop", "c-1", "u3", "checkout"),
        ],
    };
    let derived = derive_local(&view);
    assert_eq!(
        derived,
        Destinations::from([(
            "cart.shop.svc.cluster.local".to_owned(),
            vec!["spiffe://cluster.local/ns/shop/sa/cart".to_owned()]
        )]),
        "checkout has no slice of its own: no entry (fail closed)"
    );
}

#[test]
fn a_service_without_pods_gets_no_entry() {
    let view = ClusterView {
        services: vec![service("shop", "empty"), service("shop", "nodes")],
        slices: vec![
            slice("shop", "empty", &[]),
            // `endpoints: null`, and an endpoint that is not a pod.
            serde_json::from_value(json!({
                "metadata": { "name": "n", "namespace": "shop",
                              "labels": { "kubernetes.io/service-name": "nodes" } },
                "endpoints": [{ "addresses": ["10.0.0.9"], "targetRef": { "kind": "Node", "name": "n1" } },
                              { "addresses": ["10.0.0.8"] }]
            }))
            .expect("a slice"),
            serde_json::from_value(json!({
                "metadata": { "name": "e", "namespace": "shop",
                              "labels": { "kubernetes.io/service-name": "empty" } },
                "endpoints": null
            }))
            .expect("a slice"),
        ],
        pods: vec![],
    };
    assert!(derive_local(&view).is_empty());
}

#[test]
fn a_pod_without_a_service_account_name_is_default() {
    let mut p = pod("shop", "c-1", "u1", "x");
    p.spec.service_account_name = None;
    let view = ClusterView {
        services: vec![service("shop", "checkout")],
        slices: vec![slice("shop", "checkout", &[("c-1", "u1")])],
        pods: vec![p],
    };
    assert_eq!(
        derive_local(&view)["checkout.shop.svc.cluster.local"],
        ["spiffe://cluster.local/ns/shop/sa/default"]
    );
}

fn config(destinations: serde_json::Value) -> String {
    json!({
        "registry_file": "/var/run/mazu/registry",
        "trust": {
            "trust_domain": "cluster.local",
            "audience": "mazu:test",
            "issuers": [{
                "issuer": "https://issuer.test",
                "namespaces": ["*"],
                "jwks": { "keys": [{ "kty": "EC", "crv": "P-256", "kid": "k", "alg": "ES256", "use": "sig",
                    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" }] }
            }]
        },
        "destinations": destinations
    })
    .to_string()
}

#[test]
fn hand_written_destinations_win_and_the_result_parses() {
    let base = config(json!({
        "Checkout.shop.svc.cluster.local": ["spiffe://cluster.local/ns/shop/sa/pinned"],
        "legacy.example": ["spiffe://cluster.local/ns/old/sa/legacy"]
    }));
    mazu_validator::ValidatorConfig::parse(base.as_bytes()).expect("the base parses");
    let derived = Destinations::from([
        (
            "checkout.shop.svc.cluster.local".to_owned(),
            vec!["spiffe://cluster.local/ns/shop/sa/checkout".to_owned()],
        ),
        (
            "cart.shop.svc.cluster.local".to_owned(),
            vec!["spiffe://cluster.local/ns/shop/sa/cart".to_owned()],
        ),
    ]);
    let merged = merge_into_config(&base, &derived).expect("merges");
    let parsed = mazu_validator::ValidatorConfig::parse(merged.as_bytes()).expect("parses");
    let ids = |host: &str| -> Vec<String> {
        parsed
            .expected_servers(host)
            .unwrap_or_default()
            .iter()
            .map(|id| id.as_str().to_owned())
            .collect()
    };
    // Written by hand (in another case): the hand-written identity only.
    assert_eq!(
        ids("outbound_.80_._.checkout.shop.svc.cluster.local"),
        ["spiffe://cluster.local/ns/shop/sa/pinned"]
    );
    assert_eq!(
        ids("legacy.example"),
        ["spiffe://cluster.local/ns/old/sa/legacy"]
    );
    assert_eq!(
        ids("cart.shop.svc.cluster.local"),
        ["spiffe://cluster.local/ns/shop/sa/cart"]
    );
    assert_eq!(parsed.destinations.len(), 3);
    // Everything else is kept as written.
    assert_eq!(
        parsed.registry_file,
        std::path::Path::new("/var/run/mazu/registry")
    );
}

#[test]
fn merging_into_a_configuration_without_destinations() {
    let mut base: serde_json::Value = serde_json::from_str(&config(json!({}))).expect("json");
    base.as_object_mut().expect("object").remove("destinations");
    let derived = Destinations::from([(
        "cart.shop.svc.cluster.local".to_owned(),
        vec!["spiffe://cluster.local/ns/shop/sa/cart".to_owned()],
    )]);
    let merged = merge_into_config(&base.to_string(), &derived).expect("merges");
    let parsed = mazu_validator::ValidatorConfig::parse(merged.as_bytes()).expect("parses");
    assert_eq!(parsed.destinations.len(), 1);
    // Nothing derived: the configuration still parses, with no destination.
    let empty = merge_into_config(&base.to_string(), &Destinations::new()).expect("merges");
    let parsed = mazu_validator::ValidatorConfig::parse(empty.as_bytes()).expect("parses");
    assert!(parsed.destinations.is_empty());
    assert!(matches!(
        merge_into_config("[]", &derived),
        Err(MergeError::NotAnObject)
    ));
}

#[test]
fn changes_name_added_removed_and_changed_hosts() {
    let old = Destinations::from([
        ("a".to_owned(), vec!["x".to_owned()]),
        ("b".to_owned(), vec!["y".to_owned()]),
    ]);
    let new = Destinations::from([
        ("b".to_owned(), vec!["y".to_owned(), "z".to_owned()]),
        ("c".to_owned(), vec!["x".to_owned()]),
    ]);
    assert_eq!(
        Change::between(&old, &new),
        Change {
            added: vec!["c".to_owned()],
            removed: vec!["a".to_owned()],
            changed: vec!["b".to_owned()],
        }
    );
    assert_eq!(Change::between(&new, &new), Change::default());
}
