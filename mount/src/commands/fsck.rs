//! `juicefs fsck META-URL`: every block of every slice the metadata refers to must be in
//! the bucket, under the name its slice's size gives it. Exits 1 when any is lost.

use super::volume::{Volume, human};
use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

#[derive(Debug, Default, PartialEq)]
pub struct Report {
    pub blocks: u64,
    pub slices: u64,
    pub checked: u64,
    /// Missing object keys with their expected lengths.
    pub lost: Vec<(String, u64)>,
}

pub async fn check(v: &Volume, mut progress: impl FnMut(u64, u64)) -> Result<Report, String> {
    let (slices, objects) = v.inventory().await?;
    let listed: HashSet<String> = objects.into_iter().map(|o| o.key).collect();
    // A slice shared by several chunks (copy_file_range) is checked once.
    let slices: BTreeMap<u64, u32> = slices.into_iter().collect();
    let mut r = Report {
        blocks: listed.len() as u64,
        slices: slices.len() as u64,
        ..Report::default()
    };
    let bs = v.store.block_size();
    for (n, (&id, &size)) in slices.iter().enumerate() {
        for i in 0..(size as u64).div_ceil(bs).max(1) as u32 {
            let len = v.store.block_len(size, i);
            let key = v.store.block_key(id, i, len);
            r.checked += 1;
            if !listed.contains(&key) {
                r.lost.push((key, len as u64));
            }
        }
        progress(n as u64 + 1, r.slices);
    }
    Ok(r)
}

async fn fsck(url: &str) -> Result<bool, String> {
    let v = Volume::open(url, true).await?;
    let tty = std::io::stderr().is_terminal();
    let mut last = std::time::Instant::now();
    let r = check(&v, |done, total| {
        if tty && (done == total || last.elapsed().as_millis() >= 200) {
            last = std::time::Instant::now();
            let width = 30;
            let filled = (done * width).checked_div(total).unwrap_or(width) as usize;
            let _ = write!(
                std::io::stderr(),
                "\rchecking slices [{}{}] {done}/{total}",
                "=".repeat(filled),
                " ".repeat(width as usize - filled)
            );
        }
    })
    .await?;
    if tty {
        eprintln!();
    }
    for (key, len) in &r.lost {
        eprintln!("missing object {key} ({len} bytes)");
    }
    let lost_bytes: u64 = r.lost.iter().map(|(_, b)| b).sum();
    eprintln!(
        "volume {}: {} objects in the bucket, {} slices ({} blocks) in the metadata, {} lost ({})",
        v.name,
        r.blocks,
        r.slices,
        r.checked,
        r.lost.len(),
        human(lost_bytes)
    );
    Ok(r.lost.is_empty())
}

pub fn run(url: &str) -> ExitCode {
    let r = super::runtime()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(fsck(url)));
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("juicefs fsck: {e}");
            ExitCode::from(2)
        }
    }
}
