//! `/proc/self/mountinfo`: one parser for the client (its mount's device, to tune its
//! read-ahead) and the CSI node (targets, bind mounts, health).

use std::path::PathBuf;

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// `major:minor` of the mounted file system.
    pub dev: String,
    pub root: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub read_only: bool,
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // Bytes, not `&s[..]`: a slice of the str could split a multi-byte character.
        if b[i] == b'\\'
            && let Some(Ok(d)) = b.get(i + 1..i + 4).map(std::str::from_utf8)
            && let Ok(v) = u8::from_str_radix(d, 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountEntry {
                dev: f.get(2)?.to_string(),
                root: unescape(f.get(3)?),
                mount_point: PathBuf::from(unescape(f.get(4)?)),
                fs_type: r.first()?.to_string(),
                source: unescape(r.get(1).copied().unwrap_or_default()),
                read_only: f.get(5).is_some_and(|o| o.split(',').any(|x| x == "ro")),
            })
        })
        .collect()
}

pub fn mount_table() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_with_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    99 36 0:52 /team /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount rw shared:5 - fuse.juicefs myjfs rw,user_id=0\n\
                    100 36 0:53 / /mnt/a\\134b\\011c ro - fuse.juicefs odd\\9 ro\n\
                    101 36 0:54 / /mnt/\\aé - fuse.juicefs x rw\n";
        let e = parse_mountinfo(text);
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(e[0].root, "/mnt1");
        assert_eq!(e[0].dev, "98:0");
        assert_eq!(e[1].fs_type, "fuse.juicefs");
        assert_eq!(e[1].source, "myjfs");
        assert_eq!(e[1].root, "/team");
        assert_eq!(e[1].dev, "0:52");
        assert!(!e[1].read_only);
        assert_eq!(e[2].mount_point, PathBuf::from("/mnt/a\\b\tc"));
        assert_eq!(
            e[2].source, "odd\\9",
            "a backslash without three octal digits stays"
        );
        assert!(e[2].read_only);
        assert_eq!(e[3].mount_point, PathBuf::from("/mnt/\\aé"));
    }
}
