//! `--max-uploads` bounds the blocks a file has in flight, including those of slices
//! already sealed (by a full chunk, or by the background commit of a writer that paused):
//! a writer ahead of a store that stopped answering waits instead of piling blocks up in
//! memory, and everything it wrote lands once the store answers again.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BLOCK: usize = 4 << 20;
const CHUNK: u64 = 64 << 20;
const WRITES: usize = 5;

#[test]
fn a_stalled_store_stops_the_writer_at_max_uploads() {
    let Some(s3) = PrivateS3::start() else {
        return;
    };
    let vol = s3.volume("outage");
    let m = vol.mount_uncached(&["--max-uploads", "1"]);
    let path = m.path("big");
    let f = Arc::new(fs::File::create(&path).unwrap());

    s3.pause();
    // One whole block per chunk, each in a new slice, with pauses past the 1 s after which
    // the client commits an idle writer's slices in the background: every write seals the
    // slice before it while that slice's upload hangs.
    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (f, done) = (f.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..WRITES {
                f.write_all_at(&pattern(i as u64, BLOCK), i as u64 * CHUNK)?;
                done.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1500));
            }
            f.sync_all()
        })
    };
    // Unbounded, all five writes return within about 7.5 s.
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until && done.load(Ordering::SeqCst) < WRITES {
        std::thread::sleep(Duration::from_millis(100));
    }
    let returned = done.load(Ordering::SeqCst);
    s3.resume();
    assert!(
        returned <= 2,
        "{returned} of {WRITES} blocks accepted while the store hung with --max-uploads 1"
    );

    writer
        .join()
        .unwrap()
        .expect("the writes land once the store answers");
    drop(f);
    let back = fs::File::open(&path).unwrap();
    let mut buf = vec![0u8; BLOCK];
    for i in 0..WRITES {
        back.read_exact_at(&mut buf, i as u64 * CHUNK).unwrap();
        assert!(buf == pattern(i as u64, BLOCK), "block {i} differs");
    }
}
