//! `model.tar.gz` built as a stream: each entry is read (S3 GetObject or a local file), framed
//! by tar, compressed by gzip and handed to the multipart uploader, all at once. Nothing
//! touches local disk; memory is bounded by the uploader's parts.

use std::collections::BTreeMap;

use async_compression::tokio::write::GzipEncoder;
use async_compression::Level;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio_tar::{Builder, Header};

use super::{multipart, Entry, EntrySource, Progress};
use crate::aws::{classify, Clients};
use crate::error::{Error, Result};

/// Pipe between the archive writer and the uploader.
const PIPE_BYTES: usize = 4 * 1024 * 1024;

async fn open(clients: &Clients, entry: &Entry) -> Result<Box<dyn AsyncRead + Unpin + Send>> {
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

fn stream_error(e: std::io::Error) -> Error {
    Error::Terminal(format!("building the archive: {e}"))
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
    let (writer, reader) = tokio::io::duplex(PIPE_BYTES);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let produce = async move {
        let result = async move {
            let gzip = GzipEncoder::with_quality(writer, Level::Precise(level as i32));
            let mut tar = Builder::new_non_terminated(gzip);
            for entry in entries {
                let mut header = Header::new_gnu();
                header.set_size(entry.size);
                header.set_mode(0o644);
                header.set_mtime(0);
                let data = open(clients, entry).await?;
                tar.append_data(&mut header, &entry.path, data)
                    .await
                    .map_err(stream_error)?;
            }
            tar.finish().await.map_err(stream_error)?;
            let mut gzip = tar.into_inner().await.map_err(stream_error)?;
            gzip.shutdown().await.map_err(stream_error)?;
            Ok::<(), Error>(())
        }
        .await;
        // The writer is dropped by now, so the uploader has seen the end of the stream.
        let _ = done_tx.send(result);
    };
    let consume = multipart::upload(clients, bucket, key, metadata, reader, progress, done_rx);
    let ((), uploaded) = tokio::join!(produce, consume);
    uploaded
}
