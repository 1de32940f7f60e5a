//! A cached answer and its stored form: a small fixed header (what purges and `age` need
//! without the body), then the body compressed with zstd.

use bytes::Bytes;

use crate::cache::template::Template;

/// How the answer was delivered when it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One JSON document.
    Json,
    /// A server-sent event stream, as the client got it, ending with `[DONE]`.
    Sse,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unix seconds when it expires (an in-process copy of a Redis entry lives no longer).
    pub expires_at: u64,
    pub kind: Kind,
    /// Unix seconds when it was stored (for `age`).
    pub stored_at: u64,
    /// The stored answer's usage.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The key whose request stored it (0: none), for purges by key.
    pub key_id: i64,
    /// The configured model name, for purges and stats by model.
    pub model: String,
    pub body: Bytes,
    /// The body prepared for serving, made by the first hit that needs it.
    pub prepared: Prepared,
}

/// An entry's body cut into templates (see `template`), kept with the entry in memory.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub json: std::sync::OnceLock<Template>,
    /// The stream: replayed, or told from the JSON answer (`None`: it cannot be).
    pub stream: std::sync::OnceLock<Option<Template>>,
}

/// What an entry is does not depend on what was prepared from it.
impl PartialEq for Prepared {
    fn eq(&self, _: &Prepared) -> bool {
        true
    }
}

impl Eq for Prepared {}

const MAGIC: &[u8; 4] = b"TGC2";
/// Magic, kind, stored_at, expires_at, prompt, completion, key id, body length, model
/// length.
pub const HEADER_LEN: usize = 4 + 1 + 8 * 5 + 4 + 2;
/// Longest model name kept in the header (config model names are shorter).
const MAX_MODEL: usize = 256;
/// zstd's fastest level: hits and stores stay cheap, and JSON still shrinks several-fold.
const LEVEL: i32 = 1;

impl Entry {
    /// Bytes it holds in memory (the in-process store's charge): the body, and about as
    /// much again once prepared for serving.
    pub fn weight(&self) -> usize {
        2 * self.body.len() + self.model.len() + 256
    }

    pub fn encode(&self) -> std::io::Result<Vec<u8>> {
        let model = &self.model.as_bytes()[..self.model.len().min(MAX_MODEL)];
        let packed = zstd::bulk::compress(&self.body, LEVEL)?;
        let mut out = Vec::with_capacity(HEADER_LEN + model.len() + packed.len());
        out.extend_from_slice(MAGIC);
        out.push(match self.kind {
            Kind::Json => 1,
            Kind::Sse => 2,
        });
        out.extend_from_slice(&self.stored_at.to_le_bytes());
        out.extend_from_slice(&self.expires_at.to_le_bytes());
        out.extend_from_slice(&self.prompt_tokens.to_le_bytes());
        out.extend_from_slice(&self.completion_tokens.to_le_bytes());
        out.extend_from_slice(&self.key_id.to_le_bytes());
        let body_len = u32::try_from(self.body.len()).map_err(std::io::Error::other)?;
        out.extend_from_slice(&body_len.to_le_bytes());
        out.extend_from_slice(&(model.len() as u16).to_le_bytes());
        out.extend_from_slice(model);
        out.extend_from_slice(&packed);
        Ok(out)
    }

    /// The header alone (`body` left empty): enough for purges; `None` if it is not an
    /// entry of this version.
    pub fn decode_header(bytes: &[u8]) -> Option<(Entry, usize, usize)> {
        let header = bytes.get(..HEADER_LEN)?;
        if &header[..4] != MAGIC {
            return None;
        }
        let kind = match header[4] {
            1 => Kind::Json,
            2 => Kind::Sse,
            _ => return None,
        };
        let u64_at = |at: usize| {
            header
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        let body_len = u32::from_le_bytes(header.get(45..49)?.try_into().ok()?) as usize;
        let model_len = u16::from_le_bytes(header.get(49..51)?.try_into().ok()?) as usize;
        let model = bytes.get(HEADER_LEN..HEADER_LEN + model_len)?;
        let entry = Entry {
            kind,
            stored_at: u64_at(5)?,
            expires_at: u64_at(13)?,
            prompt_tokens: u64_at(21)?,
            completion_tokens: u64_at(29)?,
            key_id: i64::from_le_bytes(header.get(37..45)?.try_into().ok()?),
            model: String::from_utf8_lossy(model).into_owned(),
            body: Bytes::new(),
            prepared: Prepared::default(),
        };
        Some((entry, HEADER_LEN + model_len, body_len))
    }

    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let (mut entry, body_at, body_len) = Entry::decode_header(bytes)?;
        let body = zstd::bulk::decompress(bytes.get(body_at..)?, body_len).ok()?;
        (body.len() == body_len).then_some(())?;
        entry.body = Bytes::from(body);
        Some(entry)
    }
}

/// An entry for tests: a JSON answer of `size` bytes that never expires.
#[cfg(test)]
pub fn sample(model: &str, key_id: i64, size: usize) -> std::sync::Arc<Entry> {
    std::sync::Arc::new(Entry {
        kind: Kind::Json,
        stored_at: 0,
        expires_at: u64::MAX,
        prompt_tokens: 1,
        completion_tokens: 1,
        key_id,
        model: model.into(),
        body: Bytes::from(vec![b'x'; size]),
        prepared: Prepared::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_its_header_reads_alone() {
        let entry = Entry {
            kind: Kind::Sse,
            stored_at: 1_700_000_000,
            expires_at: 1_700_003_600,
            prepared: Prepared::default(),
            prompt_tokens: 12,
            completion_tokens: 34,
            key_id: 56,
            model: "gpt-4o-mini".into(),
            body: Bytes::from("data: {\"x\":1}\n\n".repeat(50)),
        };
        let stored = entry.encode().unwrap();
        assert!(stored.len() < entry.body.len());
        assert_eq!(Entry::decode(&stored), Some(entry.clone()));
        let (header, _, len) = Entry::decode_header(&stored[..HEADER_LEN + 11]).unwrap();
        assert_eq!(
            (header.model.as_str(), header.key_id, len),
            ("gpt-4o-mini", 56, entry.body.len())
        );
        assert_eq!(Entry::decode(b"nonsense"), None);
        let mut cut = stored.clone();
        cut.truncate(stored.len() - 3);
        assert_eq!(Entry::decode(&cut), None);
    }
}
