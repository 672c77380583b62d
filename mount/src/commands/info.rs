//! `juicefs info PATH`: what a file is made of (inode, chunks, slices, the objects that hold
//! its data) or what a directory holds, asked from the mount serving PATH through its
//! `.control` file.

use crate::meta::{CHUNK_SIZE, FileKind, Meta};
use crate::vfs::Vfs;
use serde_json::{Value, json};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The answer for `ino` (kernel inode numbers: 1 is the mount's root).
pub async fn describe(vfs: &Vfs, ino: u64) -> Value {
    let ino = if ino == 1 { vfs.cfg.root } else { ino };
    let a = match vfs.meta.getattr(ino).await {
        Ok(a) => a,
        Err(e) => return json!({"error": format!("inode {ino}: {e}")}),
    };
    if a.kind == FileKind::Dir {
        return match summary(&*vfs.meta, ino).await {
            Ok((files, dirs, bytes)) => {
                json!({"inode": ino, "type": "directory", "files": files, "dirs": dirs, "length": bytes})
            }
            Err(e) => json!({"error": format!("inode {ino}: {e}")}),
        };
    }
    let mut chunks = Vec::new();
    let mut objects = Vec::new();
    let bs = vfs.store.block_size();
    for index in 0..a.length.div_ceil(CHUNK_SIZE) as u32 {
        let slices = match vfs.meta.read_chunk(ino, index).await {
            Ok(s) => s,
            Err(e) => return json!({"error": format!("chunk {index} of inode {ino}: {e}")}),
        };
        let mut seen = std::collections::HashSet::new();
        for s in slices.iter().filter(|s| s.id > 0) {
            if seen.insert(s.id) {
                for b in 0..(s.size as u64).div_ceil(bs) as u32 {
                    let len = vfs.store.block_len(s.size, b);
                    objects.push(json!({"key": vfs.store.block_key(s.id, b, len), "size": len}));
                }
            }
        }
        chunks.push(json!({
            "index": index,
            "slices": slices.iter().map(|s| json!({"pos": s.pos, "id": s.id, "size": s.size, "off": s.off, "len": s.len})).collect::<Vec<_>>(),
        }));
    }
    json!({"inode": ino, "type": "file", "length": a.length, "chunks": chunks, "objects": objects})
}

async fn summary(m: &dyn Meta, dir: u64) -> Result<(u64, u64, u64), String> {
    let (mut files, mut dirs, mut bytes) = (0u64, 0u64, 0u64);
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in m.readdir(d, true).await.map_err(|e| e.to_string())? {
            if e.name == "." || e.name == ".." {
                continue;
            }
            if e.kind == FileKind::Dir {
                dirs += 1;
                stack.push(e.ino);
            } else {
                files += 1;
                bytes += e.attr.map_or(0, |a| a.length);
            }
        }
    }
    Ok((files, dirs, bytes))
}

/// The mount root above `p`: the nearest directory whose `.control` exists.
fn mount_root(p: &Path) -> Option<PathBuf> {
    let mut d = if p.is_dir() {
        p.to_path_buf()
    } else {
        p.parent()?.to_path_buf()
    };
    loop {
        if d.join(".control").exists() {
            return Some(d);
        }
        d = d.parent()?.to_path_buf();
    }
}

fn ask(p: &Path) -> Result<Value, String> {
    let p = std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let ino = std::fs::metadata(&p)
        .map_err(|e| format!("{}: {e}", p.display()))?
        .ino();
    let root =
        mount_root(&p).ok_or_else(|| format!("{} is not inside a juicefs mount", p.display()))?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(root.join(".control"))
        .map_err(|e| format!("{}/.control: {e}", root.display()))?;
    f.write_all(json!({"op": "info", "inode": ino}).to_string().as_bytes())
        .map_err(|e| format!("asking {}: {e}", root.display()))?;
    f.rewind().map_err(|e| e.to_string())?;
    let mut answer = String::new();
    f.read_to_string(&mut answer)
        .map_err(|e| format!("reading the answer: {e}"))?;
    let v: Value = serde_json::from_str(&answer).map_err(|e| format!("malformed answer: {e}"))?;
    match v["error"].as_str() {
        Some(e) => Err(e.to_string()),
        None => Ok(v),
    }
}

pub fn run(paths: &[String], json_out: bool) -> ExitCode {
    let mut ok = true;
    for p in paths {
        match ask(Path::new(p)) {
            Ok(v) if json_out => println!("{v}"),
            Ok(v) => print_human(p, &v),
            Err(e) => {
                eprintln!("juicefs info: {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_human(p: &str, v: &Value) {
    println!("{p}:\n  inode: {}", v["inode"]);
    if v["type"] == "directory" {
        println!(
            "  files: {}\n  dirs: {}\n  length: {}",
            v["files"], v["dirs"], v["length"]
        );
        return;
    }
    println!("  length: {}", v["length"]);
    for c in v["chunks"].as_array().into_iter().flatten() {
        println!("  chunk {}:", c["index"]);
        for s in c["slices"].as_array().into_iter().flatten() {
            println!(
                "    slice {} pos {} off {} len {} (size {})",
                s["id"], s["pos"], s["off"], s["len"], s["size"]
            );
        }
    }
    println!("  objects:");
    for o in v["objects"].as_array().into_iter().flatten() {
        println!(
            "    {} ({} bytes)",
            o["key"].as_str().unwrap_or_default(),
            o["size"]
        );
    }
}
