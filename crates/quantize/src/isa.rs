//! Which instruction set the fast kernels run with: detected once at run time, optionally
//! capped by the caller (a benchmark measuring the AVX2 path on an AVX-512 machine).
//!
//! Every level writes the same bytes; the levels differ only in speed. The cap is an explicit
//! call, never an environment variable: libraries do not read the environment.

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set level of the fast kernels, from the most portable to the widest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust (SSE2 on x86-64): runs on every CPU.
    Portable,
    /// x86-64 with AVX2: 8 sub-blocks per 256-bit register.
    Avx2,
    /// x86-64 with AVX-512F: 16 sub-blocks per 512-bit register (two Q4_K/Q5_K super-blocks,
    /// or all 16 sub-blocks of a Q6_K super-block). Only the k-quant searches use it; the other
    /// types run their AVX2 code at this level.
    Avx512,
}

impl Isa {
    /// Every level, lowest first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// The widest level this CPU supports (checked at run time; the answer is cached by std).
    pub fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Whether this CPU can run the level.
    pub fn is_available(self) -> bool {
        self <= Isa::detected()
    }

    /// Lower-case name: `portable`, `avx2`, `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    fn from_u8(v: u8) -> Isa {
        match v {
            0 => Isa::Portable,
            1 => Isa::Avx2,
            _ => Isa::Avx512,
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The process-wide cap, as `Isa as u8`; starts at the widest level.
static LIMIT: AtomicU8 = AtomicU8::new(Isa::Avx512 as u8);

/// Cap the level [`crate::quantize_rows`] uses, for the whole process (benchmarks that report
/// the AVX2 figures of an AVX-512 machine). The output bytes do not change. Returns the level
/// now in effect: the cap, or less when the CPU has less.
pub fn set_isa_limit(limit: Isa) -> Isa {
    LIMIT.store(limit as u8, Ordering::Relaxed);
    active_isa()
}

/// The level [`crate::quantize_rows`] uses: the detected one, capped by [`set_isa_limit`].
pub fn active_isa() -> Isa {
    Isa::detected().min(Isa::from_u8(LIMIT.load(Ordering::Relaxed)))
}
