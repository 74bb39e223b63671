//! The machine's floor under a replicated write: one 4 KiB append plus `fdatasync` on the data
//! disk, and one loopback TCP round trip. A put acknowledged by a quorum cannot be faster than
//! roughly their sum, so it is printed beside the measured latencies.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Bytes appended before each sync (a WAL record of a small batch).
const APPEND_BYTES: usize = 4096;
/// Appends (and round trips) measured.
pub const SAMPLES_DEFAULT: usize = 500;

/// The floor, in milliseconds (medians).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Floor {
    /// One 4 KiB append plus `fdatasync`.
    pub fdatasync_p50_ms: f64,
    /// One loopback TCP round trip of one byte.
    pub loopback_rtt_p50_ms: f64,
}

impl Floor {
    /// Their sum: the fastest a single client's replicated write could be answered.
    pub fn write_ms(&self) -> f64 {
        self.fdatasync_p50_ms + self.loopback_rtt_p50_ms
    }
}

/// Measures the floor with `samples` of each, syncing a scratch file in `dir`.
pub fn measure(dir: &Path, samples: usize) -> Result<Floor> {
    Ok(Floor {
        fdatasync_p50_ms: fdatasync_p50(dir, samples)?,
        loopback_rtt_p50_ms: loopback_p50(samples)?,
    })
}

/// The median, in milliseconds, of microsecond samples.
fn median_ms(samples: &[u64]) -> f64 {
    let mut histogram = Histogram::<u64>::new(3).expect("3 significant digits is valid");
    for &s in samples {
        let _ = histogram.record(s);
    }
    histogram.value_at_quantile(0.5) as f64 / 1000.0
}

fn fdatasync_p50(dir: &Path, samples: usize) -> Result<f64> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("floor.scratch");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let block = vec![0x5a_u8; APPEND_BYTES];
    let mut took = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        took.push(start.elapsed().as_micros() as u64);
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(median_ms(&took))
}

fn loopback_p50(samples: usize) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut byte = [0u8; 1];
        while stream.read(&mut byte)? == 1 {
            stream.write_all(&byte)?;
        }
        Ok(())
    });
    let mut stream = TcpStream::connect(address)?;
    stream.set_nodelay(true)?;
    let mut took = Vec::with_capacity(samples);
    let mut byte = [7u8; 1];
    for _ in 0..samples {
        let start = Instant::now();
        stream.write_all(&byte)?;
        stream.read_exact(&mut byte)?;
        took.push(start.elapsed().as_micros() as u64);
    }
    drop(stream);
    let _ = echo.join();
    Ok(median_ms(&took))
}
