//! Property test: thousands of malformed AdmissionReviews (fields removed, retyped,
//! duplicated, bodies truncated or garbled) never panic; each gets a 400 reason or a review
//! answer, and any mutation that still decides returns a well-formed response.

mod common;
use common::FakeCluster;
use jfs_mountspec::GlobalConfig;
use jfs_webhook::inject::InjectConfig;
use jfs_webhook::review;
use serde_json::{Value, json};

/// xorshift: reproducible without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn valid() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "app",
            "operation": "CREATE", "dryRun": false,
            "object": {"metadata": {"name": "p", "namespace": "app", "labels": {"a": "b"}},
                "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                                     {"name": "m", "persistentVolumeClaim": {"claimName": "models"}}],
                         "initContainers": [{"name": "i", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}],
                         "containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d", "subPath": "s"}]}]}}}
    })
}

/// Every JSON path in `v` (object keys and array indices).
fn paths(v: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| {
            let mut p = prefix.clone();
            p.push(k.clone());
            paths(c, p, out)
        }),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| {
            let mut p = prefix.clone();
            p.push(i.to_string());
            paths(c, p, out)
        }),
        _ => {}
    }
}

fn at<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |cur, k| match cur {
        Value::Object(m) => m.get_mut(k),
        Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

fn mutate(rng: &mut Rng, v: &mut Value) {
    let mut all = Vec::new();
    paths(v, Vec::new(), &mut all);
    let path = all[rng.below(all.len())].clone();
    let replacements = [
        Value::Null,
        json!(42),
        json!(-1),
        json!("string"),
        json!(""),
        json!([]),
        json!({}),
        json!(true),
        json!("x".repeat(10_000)),
        json!([{"name": 1}]),
        json!(1e308),
    ];
    match rng.below(3) {
        0 if !path.is_empty() => {
            let (last, parent) = path.split_last().unwrap();
            if let Some(Value::Object(m)) = at(v, parent) {
                m.remove(last);
            }
        }
        _ => {
            if let Some(slot) = at(v, &path) {
                *slot = replacements[rng.below(replacements.len())].clone();
            }
        }
    }
}

#[test]
fn malformed_reviews_never_panic() {
    let mut cluster = FakeCluster::standard();
    cluster.juicefs_pvc("models", json!({"mountOptions": "cache-size=1"}), true);
    let cfgs = [true, false].map(|native| InjectConfig {
        global: GlobalConfig::default(),
        native,
        default_image: "example/mount:1".into(),
    });
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let (mut bad, mut answered) = (0, 0);
    for round in 0..4000 {
        let mut v = valid();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut v);
        }
        let mut body = serde_json::to_vec(&v).unwrap();
        match rng.below(6) {
            0 => body.truncate(rng.below(body.len())),
            1 => {
                let i = rng.below(body.len());
                body[i] = (rng.next() & 0xff) as u8;
            }
            _ => {}
        }
        let cfg = &cfgs[round % 2];
        match review::handle(&body, &cluster, cfg, false) {
            Err(e) => {
                assert!(!e.0.is_empty());
                bad += 1;
            }
            Ok(out) => {
                let r = &out.response["response"];
                assert!(r["allowed"].is_boolean(), "{}", out.response);
                assert_eq!(out.response["kind"], "AdmissionReview");
                answered += 1;
            }
        }
    }
    assert!(
        bad > 100 && answered > 100,
        "both kinds exercised: {bad} refused, {answered} answered"
    );
}
