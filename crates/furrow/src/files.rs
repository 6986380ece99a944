//! Where machine files' bytes live, through `object_store`: the data directory by default, or an
//! S3-compatible bucket (`FURROW_FILE_STORE_URL=s3://bucket/prefix`, credentials and endpoint
//! from the usual `AWS_*` variables) so that every replica reads the same files.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWrite;

use crate::config::Settings;

#[derive(Debug, thiserror::Error)]
pub enum FileStoreError {
    #[error(
        "file store URL {0}: use s3://bucket[/prefix] or leave it unset for the data directory"
    )]
    BadUrl(String),
    #[error("file store: {0}")]
    Store(#[from] object_store::Error),
    #[error("file store: {0}")]
    Io(#[from] std::io::Error),
    #[error("file store: byte ranges up to {wanted} asked of {key}, which holds {size}")]
    PastTheEnd { key: String, wanted: u64, size: u64 },
}

/// A stored file's bytes as they come.
pub type ByteStream = BoxStream<'static, Result<Bytes, object_store::Error>>;

/// The configured store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FileStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// The directory behind a local store: large outputs written by blocking code go straight
    /// to their file there (see [`FileStore::blocking_writer`]).
    local_root: Option<std::path::PathBuf>,
}

impl FileStore {
    pub fn from_settings(settings: &Settings) -> Result<Self, FileStoreError> {
        match settings.file_store_url.as_deref() {
            None => {
                std::fs::create_dir_all(&settings.data_dir)?;
                let local = LocalFileSystem::new_with_prefix(&settings.data_dir)?;
                Ok(Self {
                    store: Arc::new(local),
                    prefix: Path::default(),
                    local_root: Some(settings.data_dir.clone()),
                })
            }
            Some(raw) => {
                let url = url::Url::parse(raw).map_err(|_| FileStoreError::BadUrl(raw.into()))?;
                if url.scheme() != "s3" {
                    return Err(FileStoreError::BadUrl(raw.into()));
                }
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(raw)
                    .build()?;
                Ok(Self {
                    store: Arc::new(s3),
                    prefix: Path::from(url.path().trim_matches('/')),
                    local_root: None,
                })
            }
        }
    }

    /// A store in memory, standing in for a bucket in tests.
    #[cfg(test)]
    pub fn in_memory() -> Self {
        Self {
            store: Arc::new(object_store::memory::InMemory::new()),
            prefix: Path::from("bucket-prefix"),
            local_root: None,
        }
    }

    fn path(&self, key: &str) -> Path {
        key.split('/')
            .filter(|part| !part.is_empty())
            .fold(self.prefix.clone(), |path, part| path.child(part))
    }

    /// A streaming upload of `key`: written in parts, visible only once finished. At most
    /// two parts of 8 MiB are in flight, so a large output costs little memory.
    pub fn upload(&self, key: &str) -> Upload {
        Upload {
            inner: BufWriter::with_capacity(self.store.clone(), self.path(key), 8 << 20)
                .with_max_concurrency(2),
            hasher: Sha256::new(),
        }
    }

    /// The stored bytes of `key`, as a stream, and their size.
    pub async fn read(
        &self,
        key: &str,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, object_store::Error>>), FileStoreError> {
        let result = self.store.get(&self.path(key)).await?;
        let size = result.meta.size;
        Ok((size, result.into_stream().boxed()))
    }

    /// The whole of a small file.
    pub async fn read_all(&self, key: &str) -> Result<Bytes, FileStoreError> {
        Ok(self.store.get(&self.path(key)).await?.bytes().await?)
    }

    /// `ranges` (`[start, end)`, in order and apart) of `key`, one after the other, read front to
    /// back in one pass; and how many bytes they hold.
    pub async fn read_ranges(
        &self,
        key: &str,
        ranges: Vec<[u64; 2]>,
    ) -> Result<(u64, ByteStream), FileStoreError> {
        let (size, stream) = self.read(key).await?;
        let wanted = ranges.iter().map(|r| r[1]).max().unwrap_or(0);
        if wanted > size {
            return Err(FileStoreError::PastTheEnd {
                key: key.to_string(),
                wanted,
                size,
            });
        }
        let total = ranges.iter().map(|[a, b]| b.saturating_sub(*a)).sum();
        let (mut position, mut next) = (0u64, 0usize);
        let selected = stream
            .map(move |chunk| {
                let chunk = chunk?;
                let (start, end) = (position, position + chunk.len() as u64);
                position = end;
                let mut parts = Vec::new();
                while let Some(&[a, b]) = ranges.get(next) {
                    if a >= end {
                        break;
                    }
                    let (from, to) = (a.max(start), b.min(end));
                    if from < to {
                        parts.push(Ok(
                            chunk.slice((from - start) as usize..(to - start) as usize)
                        ));
                    }
                    if b > end {
                        break;
                    }
                    next += 1;
                }
                Ok::<_, object_store::Error>(futures_util::stream::iter(parts))
            })
            .try_flatten()
            .boxed();
        Ok((total, selected))
    }
}

/// A file of a local store written from blocking code: into a hidden part file beside the
/// final one, renamed into place by [`LocalWriter::finish`] (so, as with uploads, only a complete
/// file is ever visible); dropped unfinished, the part file is removed.
pub struct LocalWriter {
    file: std::io::BufWriter<std::fs::File>,
    part: std::path::PathBuf,
    target: std::path::PathBuf,
    finished: bool,
}

impl LocalWriter {
    pub fn finish(mut self) -> std::io::Result<()> {
        use std::io::Write;
        self.file.flush()?;
        std::fs::rename(&self.part, &self.target)?;
        self.finished = true;
        Ok(())
    }
}

impl std::io::Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

impl FileStore {
    /// For a local store, a blocking writer of `key` straight to its file (no copies through an
    /// async upload); `None` for a bucket, whose uploads go through [`FileStore::upload`].
    pub fn blocking_writer(&self, key: &str) -> std::io::Result<Option<LocalWriter>> {
        let Some(root) = &self.local_root else {
            return Ok(None);
        };
        let target = key
            .split('/')
            .filter(|part| !part.is_empty())
            .fold(root.clone(), |path, part| path.join(part));
        let dir = target.parent().unwrap_or(root);
        std::fs::create_dir_all(dir)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let part = dir.join(format!(".{name}.{}.part", uuid::Uuid::new_v4().simple()));
        Ok(Some(LocalWriter {
            file: std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&part)?),
            part,
            target,
            finished: false,
        }))
    }
}

/// An upload in progress; hashes (SHA-256) what passes through.
pub struct Upload {
    inner: BufWriter,
    hasher: Sha256,
}

impl Upload {
    /// Completes the upload; returns the hex SHA-256 of the bytes.
    pub async fn finish(mut self) -> Result<String, FileStoreError> {
        tokio::io::AsyncWriteExt::shutdown(&mut self.inner).await?;
        Ok(crate::store::hex(&self.hasher.finalize()))
    }

    /// Drops what was written so far.
    pub async fn abort(mut self) {
        if let Err(e) = self.inner.abort().await {
            tracing::info!(error = %e, "aborting a file upload failed");
        }
    }
}

impl AsyncWrite for Upload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            this.hasher.update(&buf[..*n]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn settings(dir: &std::path::Path, url: Option<&str>) -> Settings {
        Settings {
            data_dir: dir.to_path_buf(),
            file_store_url: url.map(str::to_string),
            ..Settings::default()
        }
    }

    #[test]
    fn urls_other_than_s3_are_refused_and_s3_keeps_its_prefix() {
        let dir = std::env::temp_dir();
        assert!(matches!(
            FileStore::from_settings(&settings(&dir, Some("ftp://host/files"))),
            Err(FileStoreError::BadUrl(_))
        ));
        assert!(matches!(
            FileStore::from_settings(&settings(&dir, Some("not a url"))),
            Err(FileStoreError::BadUrl(_))
        ));
        let s3 =
            FileStore::from_settings(&settings(&dir, Some("s3://bucket/furrow/prod"))).unwrap();
        assert_eq!(s3.path("files/u/f").as_ref(), "furrow/prod/files/u/f");
    }

    #[tokio::test]
    async fn uploads_appear_whole_with_their_hash_and_aborted_ones_not_at_all() {
        let dir = std::env::temp_dir().join(format!("furrow-files-{}", uuid::Uuid::new_v4()));
        let store = FileStore::from_settings(&settings(&dir, None)).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut upload = store.upload("files/user/a");
        for chunk in data.chunks(70_000) {
            upload.write_all(chunk).await.unwrap();
        }
        assert!(
            store.read("files/user/a").await.is_err(),
            "not visible before finish"
        );
        let hash = upload.finish().await.unwrap();
        assert_eq!(hash, crate::store::content_hash_bytes(&data));
        assert!(
            dir.join("files/user/a").is_file(),
            "the data directory layout"
        );
        let (size, stream) = store.read("files/user/a").await.unwrap();
        assert_eq!(size, data.len() as u64);
        let read: Vec<u8> = stream.map(|b| b.unwrap().to_vec()).concat().await;
        assert_eq!(read, data);

        // Blocking writers of a local store: visible once finished, gone when dropped before.
        {
            use std::io::Write;
            let mut w = store.blocking_writer("ops/u/o/a.geojson").unwrap().unwrap();
            w.write_all(&data).unwrap();
            assert!(
                store.read("ops/u/o/a.geojson").await.is_err(),
                "not before finish"
            );
            w.finish().unwrap();
            let (size, _) = store.read("ops/u/o/a.geojson").await.unwrap();
            assert_eq!(size, data.len() as u64);
            let mut dropped = store.blocking_writer("ops/u/o/b.geojson").unwrap().unwrap();
            dropped.write_all(&data).unwrap();
            drop(dropped);
            assert!(store.read("ops/u/o/b.geojson").await.is_err());
            let left: Vec<_> = std::fs::read_dir(dir.join("ops/u/o")).unwrap().collect();
            assert_eq!(left.len(), 1, "no part file left behind");
        }

        let mut aborted = store.upload("files/user/b");
        aborted.write_all(&data).await.unwrap();
        aborted.abort().await;
        assert!(store.read("files/user/b").await.is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn byte_ranges_are_read_across_the_stores_chunks() {
        let dir = std::env::temp_dir().join(format!("furrow-files-{}", uuid::Uuid::new_v4()));
        let local = FileStore::from_settings(&settings(&dir, None)).unwrap();
        // Larger than a local read's chunks, so ranges start, end and span chunk edges.
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let ranges = vec![
            [0, 10],
            [10_000, 10_001],
            [65_530, 200_000],
            [1_000_000, 3_999_999],
            [4_999_990, 5_000_000],
        ];
        let expected: Vec<u8> = ranges
            .iter()
            .flat_map(|[a, b]| data[*a as usize..*b as usize].iter().copied())
            .collect();
        for store in [local, FileStore::in_memory()] {
            let mut upload = store.upload("ops/u/o/standard.geojson");
            upload.write_all(&data).await.unwrap();
            upload.finish().await.unwrap();
            let (size, stream) = store
                .read_ranges("ops/u/o/standard.geojson", ranges.clone())
                .await
                .unwrap();
            assert_eq!(size, expected.len() as u64);
            let chunks: Vec<Bytes> = stream.map(|b| b.unwrap()).collect().await;
            assert_eq!(chunks.concat(), expected);
            let (size, stream) = store
                .read_ranges("ops/u/o/standard.geojson", Vec::new())
                .await
                .unwrap();
            assert_eq!(size, 0);
            assert_eq!(stream.count().await, 0);
            assert!(matches!(
                store
                    .read_ranges("ops/u/o/standard.geojson", vec![[4_999_990, 5_000_001]])
                    .await,
                Err(FileStoreError::PastTheEnd { .. })
            ));
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
