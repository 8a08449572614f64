//! Redaction cost: a 1 MiB tool result scanned for the values of 1 and of
//! 50 secrets, with no value present (the common case) and with 100 values
//! to replace. Run with `make bench` (or `cargo bench -p mcpgw-secrets
//! --bench redact`); prints a Markdown table for BENCHMARKS.md.
//!
//! A plain timing loop rather than a framework: each case runs for about a
//! second after a warm-up, and the median and 95th percentile of single
//! iterations are reported.

#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use mcpgw_secrets::{Redactor, SecretString};

const MIB: usize = 1 << 20;

fn secrets(n: usize) -> Vec<(String, SecretString)> {
    (0..n)
        .map(|i| {
            (
                format!("secret-{i}"),
                SecretString::from(format!("tok_{i:04}_{:016x}", fastrand_u64(i as u64))),
            )
        })
        .collect()
}

/// A fixed pseudo-random value (splitmix64), so runs are comparable.
fn fastrand_u64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 1 MiB of JSON-ish text, like a large tool result.
fn payload(values: &[&str]) -> String {
    let line =
        r#"{"type":"text","text":"The quick brown fox jumps over the lazy dog 0123456789"},"#;
    let mut text = String::with_capacity(MIB + 4096);
    // About 100 values, and every one at least once.
    let every = 12_000 / values.len().max(100);
    let mut i = 0;
    while text.len() < MIB {
        text.push_str(line);
        if !values.is_empty() && i % every == 0 {
            text.push_str(values[(i / every) % values.len()]);
        }
        i += 1;
    }
    text
}

fn measure(mut f: impl FnMut()) -> (Duration, Duration, usize) {
    for _ in 0..5 {
        f();
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) || samples.len() < 20 {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    let p95 = samples[samples.len() * 95 / 100];
    (median, p95, samples.len())
}

fn main() {
    println!("| case | secrets | median | p95 | throughput | iterations |");
    println!("|---|---:|---:|---:|---:|---:|");
    for n in [1, 10, 50, 200] {
        let owned = secrets(n);
        let redactor = Redactor::new(owned.iter().map(|(k, v)| (k.as_str(), v)));
        let (median, p95, iters) = measure(|| {
            black_box(Redactor::new(owned.iter().map(|(k, v)| (k.as_str(), v))));
        });
        println!("| build the matcher | {n} | {median:.2?} | {p95:.2?} | - | {iters} |");
        let clean = payload(&[]);
        let (median, p95, iters) = measure(|| {
            black_box(redactor.redact(black_box(&clean)));
        });
        println!(
            "| 1 MiB, no value present | {n} | {median:.2?} | {p95:.2?} | {:.0} MiB/s | {iters} |",
            1.0 / median.as_secs_f64()
        );
        let values: Vec<String> = owned
            .iter()
            .map(|(_, v)| secrecy::ExposeSecret::expose_secret(v).to_string())
            .collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let dirty = payload(&refs);
        assert_eq!(
            redactor.found(&dirty).len(),
            n,
            "every secret is present in the dirty payload"
        );
        let replaced = redactor.redact(&dirty).matches("[REDACTED:").count();
        let (median, p95, iters) = measure(|| {
            black_box(redactor.redact(black_box(&dirty)));
        });
        println!(
            "| 1 MiB, {replaced} values replaced | {n} | {median:.2?} | {p95:.2?} | {:.0} MiB/s | {iters} |",
            1.0 / median.as_secs_f64()
        );
    }
}
