//! Deterministic completion text and the one token count every endpoint shares.
//! Content is a pure function of (model, prompt), so stream deltas reassemble to the non-stream text.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::LazyLock;

use tollgate_tokenizer::Tokenizer;

/// Each entry is one token. The leading space is dropped for the first token of a completion.
/// Plain ASCII letters only, so a word never needs JSON escaping.
const WORDS: [&str; 64] = [
    " the",
    " quick",
    " mock",
    " token",
    " gateway",
    " stream",
    " model",
    " answer",
    " river",
    " stone",
    " light",
    " cloud",
    " green",
    " paper",
    " window",
    " signal",
    " orbit",
    " garden",
    " copper",
    " silver",
    " harbor",
    " forest",
    " engine",
    " bridge",
    " pencil",
    " marble",
    " thunder",
    " velvet",
    " canyon",
    " meadow",
    " lantern",
    " compass",
    " falcon",
    " glacier",
    " island",
    " jungle",
    " kettle",
    " ladder",
    " mirror",
    " needle",
    " oyster",
    " pepper",
    " quartz",
    " rocket",
    " saddle",
    " tunnel",
    " umbrella",
    " valley",
    " walnut",
    " yonder",
    " zephyr",
    " amber",
    " basket",
    " candle",
    " dragon",
    " ember",
    " feather",
    " granite",
    " hollow",
    " ivory",
    " jasper",
    " kernel",
    " lemon",
    " maple",
];

/// Framing tokens added per message and once per prompt, as OpenAI's chat format does.
pub const TOKENS_PER_MESSAGE: u32 = 3;
pub const TOKENS_PER_PROMPT: u32 = 3;
/// A message's `name` costs one token beyond its text.
pub const TOKENS_PER_NAME: u32 = 1;

/// Distinct texts remembered per thread; benchmarks repeat one prompt, tests send a few thousand.
const COUNT_CACHE: usize = 16_384;

/// OpenAI's o200k tokenizer: its vocabulary is static; this is its compiled split pattern.
static TOKENIZER: LazyLock<Result<Tokenizer, tollgate_tokenizer::Error>> =
    LazyLock::new(Tokenizer::new);

thread_local! {
    static COUNTS: RefCell<HashMap<(u64, usize), u32>> = RefCell::new(HashMap::new());
}

/// Tokens in a piece of text as OpenAI counts them for its current models (o200k), so usage
/// matches what a client-side tokenizer predicts. Counts are cached by content hash: encoding
/// is the slowest step of an answer, and load tests send the same prompt again and again.
pub fn text_tokens(s: &str) -> u32 {
    if s.is_empty() {
        return 0;
    }
    let key = (hash_str(s), s.len());
    if let Some(n) = COUNTS.with(|c| c.borrow().get(&key).copied()) {
        return n;
    }
    let n = match TOKENIZER.as_ref() {
        Ok(tokenizer) => u32::try_from(tokenizer.count(s)).unwrap_or(u32::MAX),
        // Not expected (the pattern is built in): a token per four bytes.
        Err(_) => u32::try_from(s.len().div_ceil(4)).unwrap_or(u32::MAX),
    };
    COUNTS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= COUNT_CACHE {
            c.clear();
        }
        c.insert(key, n);
    });
    n
}

/// Compiles the tokenizer's split pattern ahead of the first request.
pub fn warm_tokenizer() {
    let _ = text_tokens("warm");
}

/// Token `i` of the completion seeded by `seed`. Token i never depends on the total length,
/// so a shorter completion is a prefix of a longer one.
pub fn token(seed: u64, i: u32) -> &'static str {
    let word = WORDS[(mix(seed ^ u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 64) as usize];
    if i == 0 { &word[1..] } else { word }
}

/// The full completion text of `n` tokens.
pub fn content(seed: u64, n: u32) -> String {
    let mut out = String::with_capacity(n as usize * 8);
    for i in 0..n {
        out.push_str(token(seed, i));
    }
    out
}

/// FNV-1a: tiny, allocation-free and stable across runs and platforms.
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

pub fn hash_str(s: &str) -> u64 {
    let mut h = Fnv::default();
    h.write(s.as_bytes());
    h.finish()
}

/// splitmix64 finaliser: turns correlated inputs (counters, hashes) into well-spread bits.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefix_stable_and_spaced() {
        let long = content(42, 10);
        let short = content(42, 4);
        assert!(long.starts_with(&short));
        assert!(!long.starts_with(' '));
        assert_eq!(long.split(' ').count(), 10);
        assert_ne!(content(43, 10), long);
    }

    #[test]
    fn counts_with_the_o200k_tokenizer() {
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("hello there"), 2);
        assert_eq!(text_tokens("Hello, world!"), 4);
        // Cached answers equal fresh ones.
        assert_eq!(text_tokens("Hello, world!"), 4);
        assert_eq!(text_tokens("user"), 1);
    }
}
