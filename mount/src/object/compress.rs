//! Per-block compression as JuiceFS stores it: raw LZ4 blocks (no frame, no size header)
//! or single zstd frames; the uncompressed size travels in the object key.

use bytes::Bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn parse(name: &str) -> Result<Compression, String> {
        match name.to_ascii_lowercase().as_str() {
            "" | "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!("unknown compression {other:?} (none, lz4, zstd)")),
        }
    }

    pub fn compress(self, data: Bytes) -> Bytes {
        match self {
            Compression::None => data,
            Compression::Lz4 => Bytes::from(lz4_flex::block::compress(&data)),
            // Level 1, like JuiceFS; encoding into memory cannot fail.
            Compression::Zstd => Bytes::from(zstd::bulk::compress(&data, 1).unwrap_or_default()),
        }
    }

    pub fn decompress(self, data: Bytes, size: usize) -> Result<Bytes, String> {
        match self {
            Compression::None => Ok(data),
            Compression::Lz4 => lz4_flex::block::decompress(&data, size)
                .map(Bytes::from)
                .map_err(|e| format!("lz4: {e}")),
            Compression::Zstd => zstd::bulk::decompress(&data, size)
                .map(Bytes::from)
                .map_err(|e| format!("zstd: {e}")),
        }
    }
}
