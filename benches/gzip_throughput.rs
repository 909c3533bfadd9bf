//! gzip throughput per core of sdop's archive writer (`package::targz::write_archive`: tar
//! framing, flate2/zlib-rs fed 64 KiB chunks) at each level, on a given file packed as one
//! entry: `cargo bench --bench gzip_throughput -- FILE [LEVEL...]`. Prints MB/s of input and
//! the compression ratio, for comparison with `pigz -p 1 -LEVEL`.

use std::time::Instant;

use sdop::package::{targz, Entry, EntrySource};

/// Discards bytes, counting them.
struct Sink(u64);

impl tokio::io::AsyncWrite for Sink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0 += buf.len() as u64;
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let Some(path) = args.next() else {
        eprintln!("usage: gzip_throughput FILE [LEVEL...]");
        return;
    };
    let data = bytes::Bytes::from(std::fs::read(&path).expect("read input"));
    let entry = Entry {
        path: "Stable-diffusion/input".into(),
        source: EntrySource::Local {
            file: path.clone().into(),
        },
        size: data.len() as u64,
        version: String::new(),
    };
    let mut levels: Vec<u32> = args.filter_map(|a| a.parse().ok()).collect();
    if levels.is_empty() {
        levels = vec![0, 1, 6];
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for level in levels {
        let started = Instant::now();
        let out = runtime.block_on(async {
            let mut sink = Sink(0);
            let open = |_: &Entry| {
                let data = data.clone();
                async move { Ok(Box::new(std::io::Cursor::new(data)) as targz::Source) }
            };
            targz::write_archive(std::slice::from_ref(&entry), level, open, &mut sink)
                .await
                .unwrap();
            sink.0
        });
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "level {level}: {:.0} MB/s per core, ratio {:.3} ({} -> {} bytes)",
            data.len() as f64 / seconds / 1e6,
            out as f64 / data.len() as f64,
            data.len(),
            out
        );
    }
}
