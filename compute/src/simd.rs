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
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
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
}
