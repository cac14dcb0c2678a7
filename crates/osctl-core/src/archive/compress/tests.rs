use std::io::{self, Read, Write};

use super::*;
use crate::archive::testutil::{path_arg, run_text, sample_data};

fn small_blocks(threads: usize) -> CompressOptions {
    CompressOptions {
        threads,
        gzip_block_size: 64 * 1024,
        ..CompressOptions::default()
    }
}

fn compress(c: Compression, data: &[u8], options: &CompressOptions) -> Vec<u8> {
    let mut enc = Encoder::new(c, Vec::new(), options).unwrap();
    // Odd-sized writes cross block boundaries at every possible offset.
    for chunk in data.chunks(7919) {
        enc.write_all(chunk).unwrap();
    }
    enc.finish().unwrap()
}

fn decompress(c: Compression, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    decompressor(c, data)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Decodes exactly one gzip member and returns it with the bytes after it.
fn first_member(gz: &[u8]) -> (Vec<u8>, usize) {
    let mut dec = flate2::bufread::GzDecoder::new(gz);
    let mut out = Vec::new();
    dec.read_to_end(&mut out).unwrap();
    (out, dec.into_inner().len())
}

fn check_with_tool(tool: &str, bytes: &[u8], suffix: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("stream{suffix}"));
    std::fs::write(&path, bytes).unwrap();
    run_text(tool, &[&"-t", &path_arg(&path)]);
}

#[test]
fn names_and_suffixes() {
    assert_eq!(Compression::parse("gzip").unwrap(), Compression::Gzip);
    assert_eq!(Compression::parse("off").unwrap().suffix(), "");
    assert!(Compression::parse("bzip2").is_err());
    assert_eq!(
        Compression::split_suffix("base.dat.gz"),
        ("base.dat", Compression::Gzip)
    );
    assert_eq!(
        Compression::split_suffix("base.tar.zst"),
        ("base.tar", Compression::Zstd)
    );
    assert_eq!(
        Compression::split_suffix("base.dat"),
        ("base.dat", Compression::Off)
    );
    for c in [Compression::Off, Compression::Gzip, Compression::Zstd] {
        assert_eq!(Compression::parse(&c.to_string()).unwrap(), c);
    }
}

#[test]
fn gzip_round_trips_across_block_boundaries_as_one_member() {
    let block = 64 * 1024;
    for (i, len) in [
        0,
        1,
        1000,
        block - 1,
        block,
        block + 1,
        3 * block,
        5 * block + 17,
    ]
    .into_iter()
    .enumerate()
    {
        for threads in [1, 3] {
            let data = sample_data(len, i as u64);
            let gz = compress(Compression::Gzip, &data, &small_blocks(threads));
            let (first, rest) = first_member(&gz);
            assert_eq!(first, data, "len {len}, {threads} threads");
            assert_eq!(rest, 0, "len {len}: bytes after the first gzip member");
            assert_eq!(decompress(Compression::Gzip, &gz), data);
        }
    }
}

#[test]
fn gzip_output_passes_gzip_t() {
    let data = sample_data(1_000_000, 7);
    let gz = compress(Compression::Gzip, &data, &small_blocks(2));
    check_with_tool("gzip", &gz, ".gz");
    check_with_tool(
        "gzip",
        &compress(Compression::Gzip, &[], &small_blocks(2)),
        ".gz",
    );
}

#[test]
fn gzip_of_incompressible_data() {
    let mut data = vec![0u8; 300_000];
    let mut x = 0x9E3779B97F4A7C15u64;
    for b in &mut data {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let gz = compress(Compression::Gzip, &data, &small_blocks(2));
    assert_eq!(first_member(&gz).0, data);
    assert!(gz.len() < data.len() + data.len() / 100);
}

#[test]
fn gzip_ratio_is_close_to_gzip_6() {
    let data = sample_data(8 << 20, 11);
    let ours = compress(Compression::Gzip, &data, &CompressOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    std::fs::write(&path, &data).unwrap();
    run_text("gzip", &[&"-6", &"-k", &path_arg(&path)]);
    let reference = std::fs::metadata(dir.path().join("data.gz")).unwrap().len() as f64;
    let ratio = ours.len() as f64 / reference;
    println!(
        "ours {} bytes, gzip -6 {reference} bytes, ratio {ratio:.4}",
        ours.len()
    );
    assert!(
        ratio < 1.02,
        "our gzip output is {ratio:.4}x the size of gzip -6"
    );
}

#[test]
fn sink_errors_propagate() {
    struct FailAfter(usize);
    impl Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() > self.0 {
                return Err(io::Error::other("disk full"));
            }
            self.0 -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let data = sample_data(2 << 20, 3);
    for c in [Compression::Gzip, Compression::Zstd] {
        let mut enc = Encoder::new(c, FailAfter(10_000), &small_blocks(2)).unwrap();
        let result = enc.write_all(&data).and_then(|()| enc.finish().map(drop));
        let err = result.unwrap_err();
        assert!(err.to_string().contains("disk full"), "{c}: {err}");
    }
}

#[test]
fn dropping_an_unfinished_encoder_is_harmless() {
    let mut enc = Encoder::new(Compression::Gzip, Vec::new(), &small_blocks(2)).unwrap();
    enc.write_all(&sample_data(500_000, 1)).unwrap();
    drop(enc);
}

#[test]
fn zstd_round_trips_and_passes_zstd_t() {
    for len in [0, 1, 1 << 20, (3 << 20) + 5] {
        let data = sample_data(len, len as u64);
        let z = compress(Compression::Zstd, &data, &CompressOptions::default());
        assert_eq!(decompress(Compression::Zstd, &z), data, "len {len}");
        check_with_tool("zstd", &z, ".zst");
    }
}

#[test]
fn off_passes_bytes_through() {
    let data = sample_data(100_000, 5);
    let out = compress(Compression::Off, &data, &CompressOptions::default());
    assert_eq!(out, data);
    assert_eq!(decompress(Compression::Off, &out), data);
}

#[test]
fn multi_member_gzip_is_read_whole() {
    let a = sample_data(70_000, 1);
    let b = sample_data(90_000, 2);
    let mut both = compress(Compression::Gzip, &a, &small_blocks(1));
    both.extend(compress(Compression::Gzip, &b, &small_blocks(1)));
    assert_eq!(decompress(Compression::Gzip, &both), [a, b].concat());
}

/// Real files for the benchmark: the start of `/usr` as one tar stream.
fn usr_sample(len: u64) -> Vec<u8> {
    let mut tar = crate::cmd::Cmd::new("tar")
        .args(["-cf", "-", "-C", "/usr", "bin", "lib", "share"])
        .spawn_reader()
        .unwrap();
    let mut out = Vec::new();
    (&mut tar).take(len).read_to_end(&mut out).unwrap();
    out
}

/// Prints throughput against single-threaded deflate, `gzip -6` and `pigz -6`
/// on the same input; run by hand on an idle machine with
/// `cargo test --release -p osctl-core gzip_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn gzip_throughput() {
    let data = usr_sample(128 << 20);
    let mb = data.len() as f64 / 1e6;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    std::fs::write(&path, &data).unwrap();
    let time = |f: &mut dyn FnMut() -> u64| {
        let t = std::time::Instant::now();
        let size = f();
        (mb / t.elapsed().as_secs_f64(), size)
    };
    let tool = |program: &str| {
        time(&mut || {
            run_text(program, &[&"-6", &"-k", &"-f", &path_arg(&path)]);
            std::fs::metadata(dir.path().join("data.gz")).unwrap().len()
        })
    };
    let (gzip_rate, gzip_size) = tool("gzip");
    let (pigz_rate, pigz_size) = tool("pigz");
    println!("gzip -6: {gzip_rate:.1} MB/s, {gzip_size} bytes");
    println!("pigz -6: {pigz_rate:.1} MB/s, {pigz_size} bytes");
    let (single_rate, single_size) = time(&mut || {
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        single.finish().unwrap().len() as u64
    });
    println!("flate2 single-threaded level 6: {single_rate:.1} MB/s, {single_size} bytes");
    let levels = std::env::var("GZ_LEVELS").unwrap_or_else(|_| "6".into());
    let threads = [1, CompressOptions::default().threads];
    for level in levels.split(',').map(|l| l.parse::<u32>().unwrap()) {
        for (threads, block) in threads.iter().flat_map(|&t| [(t, 128 << 10), (t, 1 << 20)]) {
            let options = CompressOptions {
                threads,
                gzip_block_size: block,
                gzip_level: level,
                ..CompressOptions::default()
            };
            let (rate, size) =
                time(&mut || compress(Compression::Gzip, &data, &options).len() as u64);
            println!(
            "ours, level {level}, {} threads, {} KiB blocks: {rate:.1} MB/s ({:.2}x gzip, {:.2}x pigz), {size} bytes ({:.4}x gzip)",
            options.threads,
            block >> 10,
            rate / gzip_rate,
            rate / pigz_rate,
            size as f64 / gzip_size as f64
        );
        }
    }
}

#[test]
fn zstd_frames_with_huge_windows_are_refused() {
    let data = sample_data(1 << 20, 8);
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.window_log(27).unwrap();
    enc.long_distance_matching(true).unwrap();
    enc.write_all(&data).unwrap();
    let z = enc.finish().unwrap();
    let mut out = Vec::new();
    let result = decompressor(Compression::Zstd, z.as_slice())
        .unwrap()
        .read_to_end(&mut out);
    assert!(result.is_err(), "a 128 MiB window was accepted");
}
