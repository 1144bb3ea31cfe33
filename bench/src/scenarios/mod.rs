//! One module per scenario.

pub mod ann;
mod askers;
pub mod cluster;
pub mod cold_load;
pub mod exact_search;
pub mod memory_cap;
pub mod meta;
pub mod payload_index;
pub mod processes;
pub mod qdrant;
pub mod rpc;
pub mod soak;
pub mod upsert;

/// The `grape` binary the process scenarios start: `given`, else the one beside this
/// benchmark's binary (built by `cargo build --workspace`).
pub fn grape_binary(given: Option<&std::path::Path>) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let bin = match given {
        Some(b) => b.to_path_buf(),
        None => std::env::current_exe()?.with_file_name("grape"),
    };
    if !bin.is_file() {
        return Err(format!("no grape binary at {}: build it with cargo build --workspace (or pass --grape)", bin.display()).into());
    }
    Ok(bin)
}
