//! Generates the tonic client and server code from `proto/` at build time.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=grape");
    tonic_prost_build::configure().compile_protos(
        &["grape/v1/grape.proto", "grape/raft/v1/raft.proto", "grape/meta/v1/meta.proto", "grape/compute/v1/compute.proto"],
        &["."],
    )?;
    Ok(())
}
