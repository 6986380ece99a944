//! File contents: real zip archives built deterministically, served whole or by range.

use std::collections::HashMap;
use std::io::{Cursor, Write};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

fn zip_of(entries: &[(&str, &[u8])]) -> Bytes {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for (name, data) in entries {
        // Writing to memory cannot fail short of allocation failure.
        writer
            .start_file(*name, options)
            .expect("in-memory zip entry");
        writer.write_all(data).expect("in-memory zip write");
    }
    Bytes::from(writer.finish().expect("in-memory zip").into_inner())
}

/// A machine data file: a zip holding an ISOXML task file and a binary log of `size` bytes.
pub(crate) fn machine_file(seed: u64, size: u32) -> Bytes {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = vec![0u8; size as usize];
    rng.fill_bytes(&mut log);
    let task = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ISO11783_TaskData VersionMajor=\"4\" \
         VersionMinor=\"3\" DataTransferOrigin=\"1\"><TSK A=\"TSK{seed}\" B=\"Simulated\" G=\"4\"/>\
         </ISO11783_TaskData>\n"
    );
    zip_of(&[
        ("TASKDATA/TASKDATA.XML", task.as_bytes()),
        ("TASKDATA/TLG00001.BIN", &log),
    ])
}

/// Serves bytes honouring `Range: bytes=a-b` (206) or `?offset=&size=` (header wins).
pub(crate) fn ranged(
    bytes: Bytes,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    name: &str,
) -> Response {
    let len = bytes.len() as u64;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| parse_range(r, len))
        .or_else(|| {
            let offset: u64 = query.get("offset")?.parse().ok()?;
            let size: i64 = query.get("size").and_then(|s| s.parse().ok()).unwrap_or(-1);
            let end = if size < 0 {
                len.saturating_sub(1)
            } else {
                (offset + size as u64).min(len).saturating_sub(1)
            };
            Some(if offset < len {
                Some((offset, end))
            } else {
                None
            })
        });
    let disposition = format!("attachment; filename=\"{}\"", name.replace('"', ""));
    match range {
        None => (
            [
                (header::CONTENT_TYPE, "application/zip".to_string()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            bytes,
        )
            .into_response(),
        Some(Some((start, end))) => (
            StatusCode::PARTIAL_CONTENT,
            [
                (header::CONTENT_TYPE, "application/zip".to_string()),
                (header::CONTENT_DISPOSITION, disposition),
                (header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")),
            ],
            bytes.slice(start as usize..=end as usize),
        )
            .into_response(),
        Some(None) => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response(),
    }
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive (start, end), or None if unsatisfiable.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split(',').next()?.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.saturating_sub(n), len.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, len.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(len.checked_sub(1)?),
        ),
    };
    (start <= end && start < len).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(parse_range("bytes=900-", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some((990, 999)));
        assert_eq!(parse_range("bytes=1000-1001", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
    }

    #[test]
    fn machine_files_are_deterministic_zips() {
        let a = machine_file(3, 10_000);
        assert_eq!(a, machine_file(3, 10_000));
        assert_ne!(a, machine_file(4, 10_000));
        assert_eq!(&a[..4], b"PK\x03\x04");
        assert!(a.len() > 10_000);
    }
}
