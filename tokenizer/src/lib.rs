//! OpenAI's o200k tokenizer (GPT-4o, GPT-4.1, GPT-5, the o-series), for counting tokens.
//!
//! The vocabulary is built into the binary as three flat tables made at build time: the
//! 199,998 tokens' bytes end to end in rank order (1.4 MB), each rank's offset into them
//! (0.8 MB) and a slot table from bytes to rank (2 MiB). Nothing is parsed or allocated to
//! load them, and the pages hold no pointers: they are read from the binary when a count
//! touches them and are the kernel's to drop again. A tokenizer built from the published
//! rank file instead holds its maps on the heap (about 34 MiB) for as long as it lives.
//!
//! Counting is byte-pair merging: text is split into pieces by o200k's pattern; a piece that
//! is a token counts one; otherwise its bytes are merged pair by pair, the lowest-ranked
//! adjacent pair first (the leftmost among equals), until no adjacent pair is a token.

mod hash;

use std::{cmp::Reverse, collections::BinaryHeap};

use fancy_regex::Regex;

use hash::{SLOT_BITS, first_slot};

static BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_bytes.bin"));
static OFFSETS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_offsets.bin"));
static SLOTS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_slots.bin"));
static PATTERN: &str = include_str!(concat!(env!("OUT_DIR"), "/o200k_pattern.txt"));

/// What can go wrong making a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the o200k split pattern did not compile: {0}")]
    Pattern(#[from] Box<fancy_regex::Error>),
}

/// Counts text in o200k tokens. Holds only the compiled split pattern (and the matching
/// caches it grows); the vocabulary is static.
pub struct Tokenizer {
    split: Regex,
}

impl Tokenizer {
    pub fn new() -> Result<Self, Error> {
        let split = Regex::new(PATTERN).map_err(Box::new)?;
        Ok(Self { split })
    }

    /// Tokens in `text`, as OpenAI's tokenizer encodes it without special tokens.
    pub fn count(&self, text: &str) -> u64 {
        let mut tokens = 0;
        let mut counted = 0;
        for piece in self.split.find_iter(text) {
            match piece {
                Ok(piece) => {
                    tokens += piece_tokens(piece.as_str().as_bytes());
                    counted = piece.end();
                }
                // The pattern's one look-ahead can exceed the matcher's backtracking limit
                // on pathological text: the rest is counted at four bytes a token.
                Err(_) => {
                    let rest = text.len().saturating_sub(counted) as u64;
                    tokens += rest.div_ceil(4);
                    break;
                }
            }
        }
        tokens
    }
}

/// The little-endian `u32` at `index` of a table.
fn word(table: &[u8], index: usize) -> Option<u32> {
    let bytes = table.get(index * 4..index * 4 + 4)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// The bytes of the token of `rank`.
fn token(rank: u32) -> Option<&'static [u8]> {
    let rank = rank as usize;
    let start = word(OFFSETS, rank)? as usize;
    let end = word(OFFSETS, rank + 1)? as usize;
    BYTES.get(start..end)
}

/// The rank of the token made of `bytes`, if there is one.
fn rank(bytes: &[u8]) -> Option<u32> {
    let mask = (1usize << SLOT_BITS) - 1;
    let mut slot = first_slot(bytes);
    loop {
        // Slots hold rank + 1; 0 is empty and ends the probe.
        let rank = word(SLOTS, slot)?.checked_sub(1)?;
        if token(rank)? == bytes {
            return Some(rank);
        }
        slot = (slot + 1) & mask;
    }
}

/// Tokens in one piece of the split.
fn piece_tokens(piece: &[u8]) -> u64 {
    match piece.len() {
        0 => 0,
        // Every byte is a token.
        1 => 1,
        _ if rank(piece).is_some() => 1,
        _ => merged_parts(piece),
    }
}

/// Merges a piece's bytes as the tokenizer does and answers how many parts remain.
///
/// Parts are kept as a linked list over their start offsets, and candidate merges in a
/// min-heap by (rank, start); a candidate whose parts have changed since it was pushed is
/// skipped when popped. Each merge costs a logarithm, not a scan of the piece: a long run
/// without spaces (a base64 blob, a row of dashes) costs n log n, not n².
fn merged_parts(piece: &[u8]) -> u64 {
    let n = piece.len();
    // next[s]: where the part starting at s ends (the next part's start); prev[s]: the part
    // before it. Both are meaningful only for live starts.
    let mut next: Vec<usize> = (1..=n).collect();
    let mut prev: Vec<usize> = (0..n).map(|s| s.saturating_sub(1)).collect();
    let mut live = vec![true; n];
    // (rank, start, middle, end): merging [start, middle) with [middle, end).
    let mut heap: BinaryHeap<Reverse<(u32, usize, usize, usize)>> = BinaryHeap::new();
    let candidate = |start: usize, middle: usize, end: usize| {
        rank(&piece[start..end]).map(|rank| Reverse((rank, start, middle, end)))
    };
    heap.extend((0..n - 1).filter_map(|s| candidate(s, s + 1, s + 2)));

    let mut parts = n as u64;
    while let Some(Reverse((_, start, middle, end))) = heap.pop() {
        // Still the same two parts? (A part only ever grows, and only to its right.)
        if !live[start] || next[start] != middle || next[middle] != end {
            continue;
        }
        next[start] = end;
        live[middle] = false;
        parts -= 1;
        if end < n {
            prev[end] = start;
            heap.extend(candidate(start, end, next[end]));
        }
        if start > 0 {
            heap.extend(candidate(prev[start], start, end));
        }
    }
    parts
}

#[cfg(test)]
mod tests;
