//! Nothing acknowledged is lost: data whose fsync (or close) returned success survives a
//! client killed with SIGKILL, and a restarted client mounts over the dead mount.

mod common;
use common::*;
use std::fs::{self, File};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn fsynced_data_survives_kill_9_and_the_dead_mount_is_replaced() {
    let v = Volume::new(Backend::SqliteFile).unwrap();
    v.format_ours(&[]);
    let mp = v.mountpoint("k");
    let mut m = Mount::ours(&v, &mp, &[]);
    let acked: Arc<Mutex<Vec<(String, usize, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (acked, mp) = (acked.clone(), mp.clone());
        std::thread::spawn(move || {
            // Small files closed one by one, and one growing file fsync'ed every 256 KiB.
            let mut log = match File::create(mp.join("growing")) {
                Ok(f) => f,
                Err(_) => return,
            };
            let mut grown = 0usize;
            for i in 0u64.. {
                let name = format!("f{i}");
                let size = 1000 + (i as usize * 7919) % 300_000;
                if fs::write(mp.join(&name), pattern(i, size)).is_err() {
                    return;
                }
                acked.lock().unwrap().push((name, size, i));
                let piece = pattern(1_000_000 + i, 256 << 10);
                if log.write_all(&piece).is_err() || log.sync_all().is_err() {
                    return;
                }
                grown += piece.len();
                acked
                    .lock()
                    .unwrap()
                    .push(("growing".into(), grown, u64::MAX));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(2500));
    m.kill9_leave_dead_mount();
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 10,
        "the workload should have made progress before the kill"
    );
    // The restarted client clears the dead mount itself (what a restarted sidecar does).
    let m = Mount::ours(&v, &mp, &[]);
    let mut growing_len = 0;
    for (name, size, seed) in &acked {
        if name == "growing" {
            growing_len = *size;
            continue;
        }
        let got =
            fs::read(m.path(name)).unwrap_or_else(|e| panic!("{name} lost after kill -9: {e}"));
        assert!(got == pattern(*seed, *size), "{name} differs after kill -9");
    }
    let got = fs::read(m.path("growing")).unwrap();
    assert!(
        got.len() >= growing_len,
        "fsync'ed length {growing_len} lost: now {}",
        got.len()
    );
    for (i, piece) in got[..growing_len].chunks(256 << 10).enumerate() {
        assert!(
            piece == pattern(1_000_000 + i as u64, 256 << 10),
            "growing file piece {i} differs"
        );
    }
}
