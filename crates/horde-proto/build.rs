//! Compiles `proto/horde/v1/*.proto` with `protox` (pure Rust), so no system `protoc` is needed.

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["horde/v1/events.proto", "horde/v1/sync.proto"];
    for file in &files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile(files, [&root]).expect("proto/ compiles");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("prost generates Rust from the descriptors");
}
