// Shared by the build script (which lays the table out) and the crate (which reads it): both
// must place a token in the same slot. Plain items only: the build script `include!`s this.

/// The slot table holds 2^19 slots for 199,998 tokens: under 40 % full, so a look-up, hit or
/// miss, reads one or two slots.
pub(crate) const SLOT_BITS: u32 = 19;

/// The first slot to try for a token's bytes (FxHash's multiply-rotate; its high bits).
pub(crate) fn first_slot(bytes: &[u8]) -> usize {
    let mut h: u64 = 0;
    for &b in bytes {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    (h >> (64 - SLOT_BITS)) as usize
}
