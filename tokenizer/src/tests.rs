//! The counts are checked against tiktoken-rs, OpenAI's algorithm as a Rust crate, which
//! builds the same vocabulary from the published rank file.

use super::*;

fn reference(text: &str) -> u64 {
    tiktoken_rs::o200k_base_singleton()
        .encode_ordinary(text)
        .len() as u64
}

fn tokenizer() -> Tokenizer {
    Tokenizer::new().unwrap()
}

#[test]
fn every_token_is_found_by_its_bytes() {
    let mut rank_count = 0u32;
    while let Some(bytes) = token(rank_count) {
        assert_eq!(rank(bytes), Some(rank_count), "{bytes:?}");
        rank_count += 1;
    }
    assert_eq!(rank_count, 199_998);
    assert_eq!(rank(b"not a single token, surely"), None);
    assert_eq!(rank(b""), None);
}

#[test]
fn samples_count_as_the_reference_counts_them() {
    let t = tokenizer();
    let samples = [
        "",
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog. I'LL SAY it's they're we've you'd.",
        "fn main() {\n    let x: Vec<u8> = vec![1, 2, 3];\n    println!(\"{x:?}\");\n}\n",
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
        "1234567890 3.14159 -42 1e-10 0x1F 2026-12-07T18:46:34Z",
        "https://example.com/path?query=value&other=1#fragment",
        "aGVsbG8gd29ybGQsIHRoaXMgaXMgYmFzZTY0IGVuY29kZWQgdGV4dA==",
        "   leading spaces\n\n\n\ttabs\r\n\r\nand trailing   ",
        "  \n  x  \n\n  ",
        "Ünïcödé façade naïve coöperate Straße ÆØÅ",
        "e\u{301} combining marks a\u{308}\u{301}",
        "漢字とひらがなとカタカナ、한국어, العربية, हिन्दी, ไทย",
        "👍🏽 🇫🇷 👨‍👩‍👧 emoji in a row 😀😀😀",
        "non\u{a0}breaking\u{2028}separators\u{3000}ideographic space",
        "MixedCASEWordsLikeThisOne and iPhone McDonald's",
        "!!!??? ... --- *** /// \\\\ ||| <<< >>> ((( )))",
        "a/b/c\n/\n/\r\n//x",
    ];
    for text in samples {
        assert_eq!(t.count(text), reference(text), "{text:?}");
    }
}

#[test]
fn long_runs_without_spaces_count_as_the_reference_counts_them() {
    let t = tokenizer();
    for unit in ["a", "ab", "-", "=", "0", "é", "漢", " ", "\n", "xY9+/"] {
        let text = unit.repeat(3000);
        assert_eq!(t.count(&text), reference(&text), "{unit:?} × 3000");
    }
}

#[test]
fn random_text_counts_as_the_reference_counts_it() {
    // A palette that meets every branch of the pattern: letters of each case and script,
    // marks, digits, punctuation, contractions, every kind of space and line break.
    let palette = [
        "a", "b", "e", "z", "A", "Q", "Z", "é", "ß", "Ω", "ж", "Ж", "\u{301}", "漢", "ひ", "한",
        "ع", "ह", "0", "7", "٣", "½", "'", "'s", "'LL", "'re", "\"", ".", ",", "!", "?", "-", "/",
        "\\", "(", "]", "{", "<", "$", "€", "_", "#", "@", "&", "+", "=", " ", " ", " ", "  ",
        "\t", "\n", "\r\n", "\r", "\u{a0}", "\u{2028}", "\u{3000}", "👍", "🏽", "\u{200d}", "the",
        "The", "THE", "ing", "tion", "http", "://", "www", ".com",
    ];
    let t = tokenizer();
    let mut rng = fastrand::Rng::with_seed(0x0200_0000);
    for _ in 0..3000 {
        let len = rng.usize(0..120);
        let text: String = (0..len)
            .map(|_| palette[rng.usize(..palette.len())])
            .collect();
        assert_eq!(t.count(&text), reference(&text), "{text:?}");
    }
}

#[test]
fn random_bytes_as_text_count_as_the_reference_counts_them() {
    // Any characters at all, including ones the vocabulary only has as single bytes.
    let t = tokenizer();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..1000 {
        let len = rng.usize(0..60);
        let text: String = (0..len).map(|_| rng.char(..)).collect();
        assert_eq!(t.count(&text), reference(&text), "{text:?}");
    }
}

#[test]
fn a_mebibyte_without_spaces_is_counted() {
    // The merge is n log n: a piece of a million bytes finishes (the reference's quadratic
    // merge would take minutes). A run of one letter merges into the same tokens over and
    // over, so a mebibyte counts 256 times what 4 KiB counts.
    let tokens = tokenizer().count(&"a".repeat(1 << 20));
    assert_eq!(tokens, 256 * reference(&"a".repeat(1 << 12)));
}
