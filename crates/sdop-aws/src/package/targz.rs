//! `model.tar.gz` built as a stream: each entry is read (S3 GetObject or a local file), framed
//! by tar, compressed by gzip and handed to the multipart uploader, all at once. Nothing
//! touches local disk; memory is bounded by the uploader's parts.
//!
//! The archive is reproducible: the same inputs give the same bytes, whatever the files'
//! times, owners and modes, the order of the sources, or how the bytes arrived (network reads
//! of any size, at any pace). Entries are sorted by their path in the archive; every tar
//! header has mtime 0, uid and gid 0, no user or group name and mode 0644 (GNU format, as
//! before: `Stable-diffusion/...` paths, GNU long names past 100 bytes, which the
//! all-in-one-ai container's `tar` reads); the gzip header has no mtime, no file name and OS
//! byte 255 ("unknown"). The compressor is fed fixed-size chunks and never flushed before the
//! end, so its output depends only on the bytes and the level.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tar::{EntryType, Header};

use super::{multipart, Entry, EntrySource, Progress};
use crate::aws::{classify, Clients};
use crate::error::{Error, Result};

/// Pipe between the archive writer and the uploader.
const PIPE_BYTES: usize = 4 * 1024 * 1024;
/// Bytes of tar handed to the compressor at a time (every chunk but the last is this size).
const CHUNK: usize = 64 * 1024;
/// The gzip header's OS byte: 255, "unknown" (RFC 1952), the same on every machine.
const GZIP_OS_UNKNOWN: u8 = 255;
/// Mode of every file in the archive.
const FILE_MODE: u32 = 0o644;

/// A source's bytes, as the archive reads them.
pub type Source = Box<dyn AsyncRead + Unpin + Send>;

async fn open(clients: &Clients, entry: &Entry) -> Result<Source> {
    match &entry.source {
        EntrySource::S3 { bucket, key } => {
            let object = clients
                .s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| classify("s3:GetObject", e))?;
            Ok(Box::new(object.body.into_async_read()))
        }
        EntrySource::Local { file } => {
            let file = tokio::fs::File::open(file)
                .await
                .map_err(|e| Error::io(format!("opening {}", file.display()), e))?;
            Ok(Box::new(file))
        }
    }
}

fn where_from(entry: &Entry) -> String {
    match &entry.source {
        EntrySource::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
        EntrySource::Local { file } => file.display().to_string(),
    }
}

/// A source that could not be read to its end (a connection cut mid-body is retryable).
fn read_error(entry: &Entry, e: std::io::Error) -> Error {
    match &entry.source {
        EntrySource::S3 { .. } => Error::Aws {
            operation: "s3:GetObject".into(),
            code: None,
            message: format!("reading {}: {e}", where_from(entry)),
            retryable: true,
        },
        EntrySource::Local { file } => Error::io(format!("reading {}", file.display()), e),
    }
}

/// A source whose size is not the listed one: it changed since the listing (retryable: the
/// next pass lists it again, with a new identity).
fn changed(entry: &Entry, read: &str) -> Error {
    let message = format!(
        "{} changed while it was packaged: listed with {} bytes, {read} read; the next pass lists it again",
        where_from(entry),
        entry.size
    );
    match &entry.source {
        EntrySource::S3 { .. } => Error::Aws {
            operation: "s3:GetObject".into(),
            code: None,
            message,
            retryable: true,
        },
        EntrySource::Local { .. } => Error::io(
            message,
            std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        ),
    }
}

fn stream_error(e: std::io::Error) -> Error {
    Error::Terminal(format!("building the archive: {e}"))
}

/// gzip of a byte stream, fed in [`CHUNK`]s, its output written to `out` as it comes.
struct Gzip {
    staged: Vec<u8>,
    encoder: flate2::write::GzEncoder<Vec<u8>>,
}

impl Gzip {
    fn new(level: u32) -> Gzip {
        let encoder = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(GZIP_OS_UNKNOWN)
            .write(Vec::new(), flate2::Compression::new(level));
        Gzip {
            staged: Vec::with_capacity(2 * CHUNK),
            encoder,
        }
    }

    async fn write<W: AsyncWrite + Unpin>(&mut self, out: &mut W, bytes: &[u8]) -> Result<()> {
        self.staged.extend_from_slice(bytes);
        if self.staged.len() < CHUNK {
            return Ok(());
        }
        let whole = self.staged.len() / CHUNK * CHUNK;
        for chunk in self.staged[..whole].chunks(CHUNK) {
            self.encoder.write_all(chunk).map_err(stream_error)?;
        }
        self.staged.drain(..whole);
        let compressed = std::mem::take(self.encoder.get_mut());
        out.write_all(&compressed).await.map_err(stream_error)
    }

    async fn finish<W: AsyncWrite + Unpin>(mut self, out: &mut W) -> Result<()> {
        self.encoder.write_all(&self.staged).map_err(stream_error)?;
        let compressed = self.encoder.finish().map_err(stream_error)?;
        out.write_all(&compressed).await.map_err(stream_error)?;
        out.shutdown().await.map_err(stream_error)
    }
}

/// The metadata every entry has, whatever the source's.
fn fixed_metadata(header: &mut Header, size: u64) -> Result<()> {
    header.set_size(size);
    header.set_mode(FILE_MODE);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_username("").map_err(stream_error)?;
    header.set_groupname("").map_err(stream_error)?;
    Ok(())
}

fn padding(len: u64) -> usize {
    ((512 - len % 512) % 512) as usize
}

/// The tar header block(s) of a regular file at `path` of `size` bytes: a GNU long-name entry
/// first when the path does not fit the header's 100 bytes.
pub fn header_blocks(path: &str, size: u64) -> Result<Vec<u8>> {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(Error::Terminal(format!(
            "archive path {path:?} must be relative, without `..`: fix the source's `path` in the ModelArchive"
        )));
    }
    let name = path.as_bytes();
    let mut blocks = Vec::with_capacity(512);
    let mut header = Header::new_gnu();
    if name.len() > 100 {
        let mut long = Header::new_gnu();
        long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        long.set_entry_type(EntryType::GNULongName);
        fixed_metadata(&mut long, name.len() as u64 + 1)?;
        long.set_cksum();
        blocks.extend_from_slice(long.as_bytes());
        blocks.extend_from_slice(name);
        blocks.push(0);
        blocks.resize(blocks.len() + padding(name.len() as u64 + 1), 0);
        header.as_old_mut().name.copy_from_slice(&name[..100]);
    } else {
        header.set_path(path).map_err(stream_error)?;
    }
    header.set_entry_type(EntryType::Regular);
    fixed_metadata(&mut header, size)?;
    header.set_cksum();
    blocks.extend_from_slice(header.as_bytes());
    Ok(blocks)
}

/// Writes `entries` to `out` as a reproducible gzip-compressed tar (see the module's doc),
/// reading each entry's bytes from `open`; shuts `out` down at the end. A source that is not
/// exactly its listed size (changed since it was listed) fails the archive.
pub async fn write_archive<W, O, F>(
    entries: &[Entry],
    level: u32,
    mut open: O,
    out: &mut W,
) -> Result<()>
where
    W: AsyncWrite + Unpin,
    O: FnMut(&Entry) -> F,
    F: Future<Output = Result<Source>>,
{
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut gzip = Gzip::new(level);
    let mut buffer = vec![0u8; CHUNK];
    for entry in sorted {
        gzip.write(out, &header_blocks(&entry.path, entry.size)?)
            .await?;
        let mut data = open(entry).await?;
        let mut copied = 0u64;
        loop {
            let read = data
                .read(&mut buffer)
                .await
                .map_err(|e| read_error(entry, e))?;
            if read == 0 {
                break;
            }
            copied += read as u64;
            if copied > entry.size {
                return Err(changed(entry, &format!("more than {}", entry.size)));
            }
            gzip.write(out, &buffer[..read]).await?;
        }
        if copied != entry.size {
            return Err(changed(entry, &copied.to_string()));
        }
        gzip.write(out, &[0; 512][..padding(entry.size)]).await?;
    }
    // The end of the archive: two zero blocks.
    gzip.write(out, &[0; 1024]).await?;
    gzip.finish(out).await
}

/// Streams `entries` as a gzip-compressed tar to `bucket/key`; returns compressed bytes.
pub async fn build(
    clients: &Clients,
    entries: &[Entry],
    level: u32,
    bucket: &str,
    key: &str,
    metadata: &BTreeMap<String, String>,
    progress: &Progress,
) -> Result<u64> {
    // The archive is reproducible, so an upload that is gone can be started again.
    multipart::restarting(bucket, key, || async {
        let (mut writer, reader) = tokio::io::duplex(PIPE_BYTES);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let produce = async move {
            let open = |entry: &Entry| {
                let entry = entry.clone();
                async move { open(clients, &entry).await }
            };
            let result = write_archive(entries, level, open, &mut writer).await;
            // Dropping the writer ends the uploader's stream, whatever happened.
            drop(writer);
            let _ = done_tx.send(result);
        };
        let consume = multipart::upload(clients, bucket, key, metadata, reader, progress, done_rx);
        let ((), uploaded) = tokio::join!(produce, consume);
        uploaded
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::path::Path;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures::StreamExt;
    use tokio::io::ReadBuf;

    use super::*;

    const LONG: &str = "Stable-diffusion/a-checkpoint-whose-name-is-longer-than-the-hundred-bytes-a-tar-header-holds-for-it-v2-1_768-ema-pruned.ckpt";

    /// A reader that hands out at most `max` bytes at a time and is not ready every other
    /// poll, as a network body arriving in pieces.
    struct Trickle {
        inner: Source,
        max: usize,
        ready: bool,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if !self.ready {
                self.ready = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut piece = vec![0u8; self.max.min(buf.remaining())];
            let mut piece_buf = ReadBuf::new(&mut piece);
            let polled = Pin::new(&mut self.inner).poll_read(cx, &mut piece_buf);
            if polled.is_ready() {
                self.ready = false;
                buf.put_slice(piece_buf.filled());
            }
            polled
        }
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Runs of zeros too, so every level has something to compress.
                if i % 4096 < 1024 {
                    0
                } else {
                    (x >> 24) as u8
                }
            })
            .collect()
    }

    /// Files of a package under `dir`, and their entries (not in archive order).
    fn files(dir: &Path) -> Vec<Entry> {
        let files = [
            ("Stable-diffusion/v1-5-pruned.ckpt", 700_000, 1),
            ("Lora/style.safetensors", 70_000, 2),
            (LONG, 5_000, 3),
            ("ControlNet/empty.pth", 0, 4),
        ];
        files
            .iter()
            .map(|&(path, len, seed)| {
                let file = dir.join(format!("source-{seed}"));
                std::fs::write(&file, pseudo_random(len, seed)).unwrap();
                Entry {
                    path: path.into(),
                    source: EntrySource::Local { file },
                    size: len as u64,
                    version: String::new(),
                }
            })
            .collect()
    }

    async fn pack(entries: &[Entry], level: u32, trickle: Option<usize>) -> Vec<u8> {
        let open = |entry: &Entry| {
            let entry = entry.clone();
            async move {
                let EntrySource::Local { file } = &entry.source else {
                    unreachable!("local sources only")
                };
                let file: Source = Box::new(tokio::fs::File::open(file).await.unwrap());
                Ok(match trickle {
                    Some(max) => Box::new(Trickle {
                        inner: file,
                        max,
                        ready: false,
                    }) as Source,
                    None => file,
                })
            }
        };
        let mut out = Vec::new();
        write_archive(entries, level, open, &mut out).await.unwrap();
        out
    }

    fn set_times_and_modes(entries: &[Entry], seconds: u64, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        for entry in entries {
            let EntrySource::Local { file } = &entry.source else {
                continue;
            };
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
            std::fs::File::options()
                .write(true)
                .open(file)
                .unwrap()
                .set_modified(time)
                .unwrap();
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    #[tokio::test]
    async fn the_same_inputs_give_the_same_bytes_however_they_arrive_whatever_their_times() {
        let dir = tempfile::tempdir().unwrap();
        let entries = files(dir.path());
        let mut reordered = entries.clone();
        reordered.reverse();
        for level in [0, 1, 6, 9] {
            set_times_and_modes(&entries, 1_000_000, 0o600);
            let first = pack(&entries, level, None).await;
            set_times_and_modes(&entries, 1_700_000_000, 0o755);
            for (how, bytes) in [
                (
                    "in pieces of 777 bytes",
                    pack(&entries, level, Some(777)).await,
                ),
                (
                    "in pieces of 4099 bytes",
                    pack(&entries, level, Some(4099)).await,
                ),
                (
                    "listed in another order",
                    pack(&reordered, level, None).await,
                ),
            ] {
                assert!(
                    bytes == first,
                    "level {level}: {how}, with other mtimes and modes: {} bytes, not the same {} bytes",
                    bytes.len(),
                    first.len()
                );
            }
        }
    }

    #[tokio::test]
    async fn headers_are_fixed_entries_sorted_and_the_container_reads_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let entries = files(dir.path());
        set_times_and_modes(&entries, 1_700_000_000, 0o700);
        for level in [0, 6] {
            let bytes = pack(&entries, level, None).await;
            // gzip: no FNAME/FCOMMENT/FEXTRA flags, mtime 0, OS 255.
            assert_eq!(bytes[..3], [0x1f, 0x8b, 0x08]);
            assert_eq!(bytes[3], 0, "gzip flags");
            assert_eq!(bytes[4..8], [0, 0, 0, 0], "gzip mtime");
            assert_eq!(bytes[9], GZIP_OS_UNKNOWN, "gzip OS byte");
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut tar)
                .unwrap();
            let mut archive = tokio_tar::Archive::new(&tar[..]);
            let mut read = archive.entries().unwrap();
            let mut paths = Vec::new();
            while let Some(entry) = read.next().await {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                assert_eq!(header.mtime().unwrap(), 0, "{path}");
                assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
                assert_eq!(header.mode().unwrap(), 0o644, "{path}");
                assert_eq!(header.username().unwrap(), Some(""), "{path}");
                assert_eq!(header.groupname().unwrap(), Some(""), "{path}");
                assert_eq!(header.entry_type(), EntryType::Regular, "{path}");
                let mut data = Vec::new();
                entry.read_to_end(&mut data).await.unwrap();
                let source = entries.iter().find(|e| e.path == path).unwrap();
                let EntrySource::Local { file } = &source.source else {
                    unreachable!()
                };
                assert!(data == std::fs::read(file).unwrap(), "{path}: content");
                paths.push(path);
            }
            assert_eq!(
                paths,
                [
                    "ControlNet/empty.pth",
                    "Lora/style.safetensors",
                    LONG,
                    "Stable-diffusion/v1-5-pruned.ckpt"
                ]
            );
        }
    }

    #[tokio::test]
    async fn a_source_that_is_not_its_listed_size_fails_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let mut entries = files(dir.path());
        entries[1].size += 1;
        let open = |entry: &Entry| {
            let entry = entry.clone();
            async move {
                let EntrySource::Local { file } = &entry.source else {
                    unreachable!()
                };
                Ok(Box::new(tokio::fs::File::open(file).await.unwrap()) as Source)
            }
        };
        let err = write_archive(&entries, 1, open, &mut Vec::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "source-2 changed while it was packaged: listed with 70001 bytes, 70000 read"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_archive_path_outside_the_archive_is_refused() {
        for path in ["/etc/passwd", "Lora/../../x", ""] {
            let err = header_blocks(path, 1).unwrap_err().to_string();
            assert!(err.contains("must be relative"), "{path}: {err}");
        }
    }
}
