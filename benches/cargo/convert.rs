//! `cargo bench --bench convert`: the same measurement as `steel bench convert`, on the
//! shared samples replicated 10 times, at 1 and 2 threads; prints JSON lines.

use steel_bench::convert::{ConvertBenchOptions, bench_convert};

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let options = ConvertBenchOptions {
        samples: root.join("../shared/data/steel-samples"),
        work: root.join("target/bench-convert"),
        copies: 10,
        threads: vec![1, 2],
    };
    match bench_convert(&options) {
        Ok(lines) => lines.iter().for_each(|line| println!("{}", line.to_json())),
        Err(error) => {
            eprintln!("bench convert failed: {error:#}");
            std::process::exit(1);
        }
    }
}
