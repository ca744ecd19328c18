//! With the `cuda` feature: compile every `cuda/*.cu` with nvcc into a fatbin for sm_80 (A100)
//! and sm_90a (H100/H200) and embed them (`$OUT_DIR/fatbins.rs`). nvcc comes from `NVCC`, from
//! `CUDA_HOME/bin`, or from the `.cuda/` folder `scripts/cuda-toolchain.sh` installs at the
//! repository root. Without the feature this does nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn find_nvcc(root: &Path) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NVCC") {
        return Some(PathBuf::from(path));
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        let nvcc = PathBuf::from(home).join("bin/nvcc");
        if nvcc.exists() {
            return Some(nvcc);
        }
    }
    let lib = root.join(".cuda/lib");
    for entry in std::fs::read_dir(&lib).ok()?.flatten() {
        let nvcc = entry.path().join("site-packages/nvidia/cu13/bin/nvcc");
        if nvcc.exists() {
            return Some(nvcc);
        }
    }
    None
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cuda");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest.parent().expect("kernels/ is inside the workspace");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let nvcc = find_nvcc(root).unwrap_or_else(|| {
        panic!(
            "the `cuda` feature needs nvcc: run scripts/cuda-toolchain.sh (installs it into \
             .cuda/), or set NVCC or CUDA_HOME"
        )
    });
    let mut sources: Vec<PathBuf> = std::fs::read_dir(manifest.join("cuda"))
        .expect("kernels/cuda exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    sources.sort();
    // nvcc runs once per file, all files at once.
    let jobs: Vec<_> = sources
        .iter()
        .map(|source| {
            let stem = source.file_stem().unwrap().to_string_lossy().into_owned();
            let target = out.join(format!("{stem}.fatbin"));
            let mut command = Command::new(&nvcc);
            command
                .args(["-fatbin", "-O3", "-std=c++17", "--expt-relaxed-constexpr"])
                // Source lines in the machine code, so compute-sanitizer names them.
                .arg("-lineinfo")
                // Machine code for A100 and H100/H200, and PTX that newer GPUs compile at
                // load time (without it any other generation fails at `Gpu::open`).
                .args(["-gencode", "arch=compute_80,code=sm_80"])
                .args(["-gencode", "arch=compute_90a,code=sm_90a"])
                .args(["-gencode", "arch=compute_90,code=compute_90"])
                .arg("-o")
                .arg(&target)
                .arg(source);
            let child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
            (stem, target, child)
        })
        .collect();
    let mut table = String::from("/// (module name, fatbin) for every kernels/cuda/*.cu.\n");
    table.push_str("pub const FATBINS: &[(&str, &[u8])] = &[\n");
    for (stem, target, child) in jobs {
        let status = child.wait_with_output().expect("nvcc ran").status;
        assert!(status.success(), "nvcc failed on cuda/{stem}.cu ({status})");
        table.push_str(&format!(
            "    ({stem:?}, include_bytes!({:?})),\n",
            target.display().to_string()
        ));
    }
    table.push_str("];\n");
    std::fs::write(out.join("fatbins.rs"), table).expect("write fatbins.rs");
}
