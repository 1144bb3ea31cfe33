//! Hot loops compiled for wider vector instructions than the build's baseline, chosen when
//! the program runs, and prefetching.
//!
//! Release binaries target baseline x86-64 (SSE2). [`wide`] runs a whole loop (a segment
//! scan, one graph search, one insert of a graph build) inside a function compiled with AVX2
//! when the CPU has it, so that what LLVM inlines into it (the graph walk, the code-distance
//! kernels of `sq8` and `bq`) is compiled with VEX instructions. The f32 distance kernels do
//! not rely on this: [`crate::distance`] picks intrinsic kernels once per process.
//! Dispatching once per loop, never per call, keeps the inlined code inlined.

/// Runs `f`, compiled for AVX2 when the CPU supports it (on x86-64), as is otherwise.
#[inline(always)]
pub fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: the CPU supports AVX2, checked above.
            return unsafe { run_avx2(f) };
        }
    }
    f()
}

/// Whether this CPU has AVX2 (detected once, then a cached load).
#[inline(always)]
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `Σ codes[i] · weights[i]` over the shorter of the two, with AVX2's 16-bit multiply-adds
/// when `avx2` says the CPU has them ([`has_avx2`]). The caller keeps the sum within i32.
#[inline(always)]
pub fn dot_u8_i16(codes: &[u8], weights: &[i16], avx2: bool) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: the caller checked that the CPU has AVX2.
        return unsafe { dot_u8_i16_avx2(codes, weights) };
    }
    let _ = avx2;
    codes.iter().zip(weights).map(|(c, w)| i32::from(*c) * i32::from(*w)).sum()
}

/// [`dot_u8_i16`] with AVX2: codes widened to 16 bits, `vpmaddwd` into eight 32-bit sums,
/// 32 dimensions a step in two chains.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dot_u8_i16_avx2(codes: &[u8], weights: &[i16]) -> i32 {
    use std::arch::x86_64::*;
    let n = codes.len().min(weights.len());
    /// Eight pair sums of the 16 codes at `c` times the 16 weights at `w`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn madd(c: *const u8, w: *const i16) -> __m256i {
        // SAFETY: the caller passes 16 readable codes and weights.
        unsafe { _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(c.cast())), _mm256_loadu_si256(w.cast())) }
    }
    let (c, w) = (codes.as_ptr(), weights.as_ptr());
    let (mut even, mut odd) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let mut i = 0;
    // SAFETY (every `madd`): `i + 32 <= n` or `i + 16 <= n`, so the codes and weights read
    // are inside both slices.
    while i + 32 <= n {
        even = _mm256_add_epi32(even, unsafe { madd(c.add(i), w.add(i)) });
        odd = _mm256_add_epi32(odd, unsafe { madd(c.add(i + 16), w.add(i + 16)) });
        i += 32;
    }
    if i + 16 <= n {
        even = _mm256_add_epi32(even, unsafe { madd(c.add(i), w.add(i)) });
        i += 16;
    }
    let sum = _mm256_add_epi32(even, odd);
    let half = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256::<1>(sum));
    let quarter = _mm_add_epi32(half, _mm_unpackhi_epi64(half, half));
    let mut total = _mm_cvtsi128_si32(_mm_add_epi32(quarter, _mm_shuffle_epi32::<0b01>(quarter)));
    while i < n {
        total += i32::from(codes[i]) * i32::from(weights[i]);
        i += 1;
    }
    total
}

/// `f()` with AVX2 enabled for everything inlined into it.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Asks the CPU to start loading the cache lines of `data` (up to `max_lines` of 64 bytes),
/// ahead of a read that would otherwise wait for memory: graph searches visit rows in an
/// order no hardware prefetcher predicts.
#[inline(always)]
pub fn prefetch<T>(data: &[T], max_lines: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let bytes = std::mem::size_of_val(data);
        let start = data.as_ptr() as *const i8;
        let mut offset = 0;
        let mut lines = 0;
        while offset < bytes && lines < max_lines {
            // SAFETY: a prefetch is only a hint; the address is inside `data`.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(start.add(offset)) };
            offset += 64;
            lines += 1;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, max_lines);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_returns_what_the_closure_returns() {
        let a: Vec<f32> = (0..131).map(|i| i as f32 * 0.5).collect();
        let plain = crate::distance::l2_squared(&a, &a[..].iter().map(|x| x + 1.0).collect::<Vec<_>>());
        let widened = wide(|| crate::distance::l2_squared(&a, &a[..].iter().map(|x| x + 1.0).collect::<Vec<_>>()));
        assert!((plain - widened).abs() <= 1e-3 * plain, "{plain} vs {widened}");
        prefetch(&a, 4);
        prefetch::<f32>(&[], 4);
    }

    #[test]
    fn integer_dot_products_agree_with_and_without_avx2() {
        for n in [0, 1, 15, 16, 17, 31, 32, 33, 128, 131] {
            let codes: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let weights: Vec<i16> = (0..n).map(|i| (i as i16).wrapping_mul(1021).wrapping_sub(16000)).collect();
            let expected: i32 = codes.iter().zip(&weights).map(|(c, w)| i32::from(*c) * i32::from(*w)).sum();
            assert_eq!(dot_u8_i16(&codes, &weights, false), expected, "{n} dimensions, scalar");
            assert_eq!(dot_u8_i16(&codes, &weights, has_avx2()), expected, "{n} dimensions");
        }
        assert_eq!(dot_u8_i16(&[255; 128], &[i16::MAX; 128], has_avx2()), 255 * 32767 * 128, "the largest sum of 128 dimensions");
    }
}
