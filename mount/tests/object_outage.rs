//! A dead object store under a live mount: the caller gets EIO, acknowledged data survives,
//! and writes work again once the store is back. A test binary of its own: its client
//! waits out about 30 s of retry backoff, during which this VM's clock leaps ahead, which
//! would trip the deadlines of tests running beside it.

mod common;
use common::*;
use std::fs;
use std::process::Command;

#[test]
fn object_store_outage_gives_eio_then_recovers() {
    let Some(mut s3) = PrivateS3::start() else {
        return;
    };
    let vol = s3.volume("outage");
    // No caches: reads must go to the object store.
    let m = vol.mount_uncached(&[]);
    let before = pattern(2, 5 << 20);
    fs::write(m.path("before"), &before).unwrap();

    s3.stop();
    // fsync, not just close: Rust's File ignores the error close(2) returns.
    let err = {
        use std::io::Write;
        let mut f = fs::File::create(m.path("during")).unwrap();
        f.write_all(&pattern(3, 1 << 20)).unwrap();
        f.sync_all().unwrap_err()
    };
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let log = m.log();
    assert!(
        log.contains(&format!("127.0.0.1:{}", s3.port)) || log.contains("outage/chunks"),
        "no log line naming the object store or the object:\n{log}"
    );

    s3.restart();
    assert_eq!(
        fs::read(m.path("before")).unwrap(),
        before,
        "acknowledged data intact"
    );
    fs::write(m.path("after"), b"back").unwrap();
    assert_eq!(fs::read(m.path("after")).unwrap(), b"back");
    drop(m);
    let fsck = run_ok({
        let mut c = Command::new(OURS);
        c.args(["fsck", &vol.meta]);
        c
    });
    assert!(String::from_utf8_lossy(&fsck.stderr).contains(" 0 lost"));
}
