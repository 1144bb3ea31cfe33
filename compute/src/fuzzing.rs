//! Entry points for fuzzing what a node decodes from clients: the cargo-fuzz targets in
//! `fuzz/` call them for as long as one likes, and the tests below run them over a bounded
//! set of damaged inputs in CI. Any crash they find becomes a case here.

use grape_meta::catalog::{CollectionSpec, Metric};

use crate::datagen;
use crate::error::ComputeError;
use crate::ingest::{conform, decode_ipc, encode_ipc};

/// Dimension of the collection inserts are decoded for.
const DIM: u32 = 8;

/// A valid insert's Arrow IPC bytes: the seed the fuzzers damage.
pub fn sample_insert() -> Vec<u8> {
    let batch = datagen::batch(DIM, 0, 16, 1);
    encode_ipc(&batch.schema(), &[batch]).unwrap_or_default()
}

/// Decodes `bytes` as an insert's rows and conforms them to a collection of generated rows,
/// as the gateway does; returns the rows accepted. It may fail, never panic.
pub fn decode_insert(bytes: &[u8]) -> Result<usize, ComputeError> {
    let schema = datagen::schema(DIM);
    let spec = CollectionSpec { name: "fuzz".into(), dim: DIM, metric: Metric::L2, shards: 2, replicas: 1, schema: Some(schema.as_ref().clone()), quantization: Default::default(), vectors: vec![], vectors_on_disk: false };
    let (_, batches) = decode_ipc(bytes)?;
    let mut rows = 0;
    for batch in &batches {
        rows += conform(&spec, &schema, batch)?.num_rows();
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn damaged_inserts_are_errors_never_panics() {
        let sample = sample_insert();
        assert_eq!(decode_insert(&sample).unwrap(), 16);
        let mut rng = StdRng::seed_from_u64(11);
        let mut refused = 0;
        for case in 0..3_000 {
            let mut bytes = sample.clone();
            match case % 3 {
                0 => bytes.truncate(rng.gen_range(0..bytes.len())),
                1 => {
                    for _ in 0..rng.gen_range(1..6) {
                        let at = rng.gen_range(0..bytes.len());
                        bytes[at] ^= 1 << rng.gen_range(0..8);
                    }
                }
                _ => {
                    let at = rng.gen_range(0..bytes.len());
                    let end = (at + rng.gen_range(1..9)).min(bytes.len());
                    bytes[at..end].fill(rng.gen());
                }
            }
            if let Err(e) = decode_insert(&bytes) {
                assert!(matches!(e, ComputeError::InvalidArgument(_)), "case {case}: {e}");
                refused += 1;
            }
        }
        assert!(refused > 1_000, "only {refused} damaged inserts were refused");
    }
}
