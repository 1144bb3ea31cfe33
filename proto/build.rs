//! Generates the tonic client and server code from `proto/` at build time: Grape's own
//! services, and Qdrant's public gRPC API (`qdrant/`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=grape");
    println!("cargo:rerun-if-changed=qdrant");
    // Every service and client decodes with `codec::SliceCodec` (see there why).
    const CODEC: &str = "crate::codec::SliceCodec";
    tonic_prost_build::configure().codec_path(CODEC).compile_protos(
        &["grape/v1/grape.proto", "grape/raft/v1/raft.proto", "grape/meta/v1/meta.proto", "grape/compute/v1/compute.proto"],
        &["."],
    )?;
    // Qdrant's files import each other by bare name, so `qdrant/` is their include root. The
    // clients serve the benchmarks (a Rust client of Grape's Qdrant gRPC API).
    // `DenseVector` is written by hand (`dense_vector`) so that its floats decode in bulk.
    tonic_prost_build::configure()
        .codec_path(CODEC)
        .extern_path(".qdrant.DenseVector", "crate::dense_vector::DenseVector")
        .compile_protos(&["qdrant/qdrant.proto", "qdrant/collections_service.proto", "qdrant/points_service.proto"], &["qdrant"])?;
    Ok(())
}
