//! Qdrant's `DenseVector` message (`repeated float data = 1`), written by hand so that its
//! floats decode in bulk.
//!
//! Every vector a Qdrant client upserts or searches with is one (`Vector.dense`,
//! `VectorInput.dense`). prost's generated decoder reads a packed `repeated float` one value
//! at a time into a vector it grows as it goes: on a gRPC upsert of 1,000 × 128 floats that
//! was 8% of the server's time. Here the field's bytes are copied out of the buffer in one
//! pass into a vector reserved once. Encoding, and any input the fast path does not take
//! (unpacked floats, a buffer split inside the field), go through prost's own code, so the
//! wire format and its errors are prost's.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, float, DecodeContext, WireType};
use prost::DecodeError;

/// A dense vector: `repeated float data = 1` (`qdrant.DenseVector`).
#[derive(Clone, PartialEq, Default, Debug)]
pub struct DenseVector {
    /// The vector's elements.
    pub data: Vec<f32>,
}

/// The tag of `data`.
const DATA: u32 = 1;

impl DenseVector {
    /// Reads a packed `data` field whose bytes all lie in `buf`'s current chunk; `false` (and
    /// nothing consumed) otherwise.
    fn merge_packed(&mut self, buf: &mut impl Buf) -> bool {
        let chunk = buf.chunk();
        let mut rest = chunk;
        let Ok(len) = encoding::decode_varint(&mut rest) else { return false };
        let Ok(len) = usize::try_from(len) else { return false };
        if len % 4 != 0 || rest.len() < len {
            return false;
        }
        let header = chunk.len() - rest.len();
        self.data.reserve(len / 4);
        self.data.extend(rest[..len].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        buf.advance(header + len);
        true
    }
}

impl prost::Message for DenseVector {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        float::encode_packed(DATA, &self.data, buf);
    }

    fn merge_field(&mut self, tag: u32, wire_type: WireType, buf: &mut impl Buf, ctx: DecodeContext) -> Result<(), DecodeError> {
        if tag != DATA {
            return encoding::skip_field(wire_type, tag, buf, ctx);
        }
        if wire_type == WireType::LengthDelimited && self.merge_packed(buf) {
            return Ok(());
        }
        float::merge_repeated(wire_type, &mut self.data, buf, ctx).map_err(|mut e| {
            e.push("DenseVector", "data");
            e
        })
    }

    fn encoded_len(&self) -> usize {
        float::encoded_len_packed(DATA, &self.data)
    }

    fn clear(&mut self) {
        self.data.clear();
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// prost's own encoding of `repeated float data = 1`, for comparison.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Generated {
        #[prost(float, repeated, tag = "1")]
        data: Vec<f32>,
    }

    #[test]
    fn round_trips_as_prost_encodes_it() {
        let data = vec![1.5, -0.0, f32::MIN_POSITIVE, 3.25e7, -2.0];
        let ours = DenseVector { data: data.clone() }.encode_to_vec();
        assert_eq!(ours, Generated { data: data.clone() }.encode_to_vec());
        assert_eq!(DenseVector::decode(ours.as_slice()).unwrap().data, data);
        assert_eq!(DenseVector::decode(&[][..]).unwrap(), DenseVector::default());
    }

    #[test]
    fn reads_unpacked_floats_and_skips_unknown_fields() {
        // data = 1.0 unpacked (key 0x0d: field 1, 32-bit), field 2 varint 7, data = 2.0 packed.
        let mut bytes = vec![0x0d];
        bytes.extend(1.0f32.to_le_bytes());
        bytes.extend([0x10, 7, 0x0a, 4]);
        bytes.extend(2.0f32.to_le_bytes());
        assert_eq!(DenseVector::decode(bytes.as_slice()).unwrap().data, vec![1.0, 2.0]);
    }

    #[test]
    fn a_truncated_or_ragged_field_is_an_error() {
        let whole = DenseVector { data: vec![1.0, 2.0] }.encode_to_vec();
        assert!(DenseVector::decode(&whole[..whole.len() - 1]).is_err());
        // A length that is not a multiple of 4.
        assert!(DenseVector::decode(&[0x0a, 3, 0, 0, 0][..]).is_err());
    }

    #[test]
    fn reads_a_field_split_across_chunks() {
        let whole = DenseVector { data: vec![1.0, 2.0, 3.0] }.encode_to_vec();
        let split = (&whole[..5]).chain(&whole[5..]);
        assert_eq!(DenseVector::decode(split).unwrap().data, vec![1.0, 2.0, 3.0]);
    }
}
