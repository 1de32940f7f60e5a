//! Lays OpenAI's o200k vocabulary out as three flat tables the crate includes in the binary
//! (see `src/lib.rs`): the token bytes end to end in rank order, each rank's offset into
//! them, and an open-addressed slot table from bytes to rank; beside them the pattern that
//! splits text into pieces.

use std::{env, error::Error, fs, path::PathBuf};

include!("src/hash.rs");

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/hash.rs");

    let bpe = tiktoken_rs::o200k_base()?;
    let mut bytes = Vec::new();
    let mut offsets: Vec<u32> = vec![0];
    // Ordinary ranks are dense from 0; the first that does not decode ends them (the special
    // tokens come after a gap, and counting never meets them).
    for rank in 0u32.. {
        let Ok(token) = bpe.decode_bytes(&[rank]) else {
            break;
        };
        bytes.extend_from_slice(&token);
        offsets.push(u32::try_from(bytes.len())?);
    }
    let tokens = offsets.len() - 1;
    if tokens < 199_000 {
        return Err(format!("o200k decoded to {tokens} tokens, expected 199,998").into());
    }

    let mask = (1usize << SLOT_BITS) - 1;
    let mut slots = vec![0u32; 1 << SLOT_BITS];
    for rank in 0..tokens {
        let token = &bytes[offsets[rank] as usize..offsets[rank + 1] as usize];
        let mut slot = first_slot(token);
        while slots[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        // 0 marks an empty slot, so a slot holds rank + 1.
        slots[slot] = u32::try_from(rank + 1)?;
    }

    let out = PathBuf::from(env::var("OUT_DIR")?);
    let words = |w: &[u32]| w.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    fs::write(out.join("o200k_bytes.bin"), &bytes)?;
    fs::write(out.join("o200k_offsets.bin"), words(&offsets))?;
    fs::write(out.join("o200k_slots.bin"), words(&slots))?;
    fs::write(
        out.join("o200k_pattern.txt"),
        tiktoken_rs::O200K_BASE_PAT_STR,
    )?;
    Ok(())
}
