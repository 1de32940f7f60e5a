//! Parses prompts (chat messages, completion prompts, Responses input, embeddings input) straight
//! into token counts and content hashes, so the hot path never builds a message tree.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::text::{
    Fnv, TOKENS_PER_MESSAGE, TOKENS_PER_NAME, TOKENS_PER_PROMPT, hash_str, mix, text_tokens,
};

/// A string from the request body, borrowed when the JSON had no escapes in it.
pub struct JsonStr<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = JsonStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// One message or input reduced to its tokens (its texts counted with the o200k tokenizer, or
/// the number of token ids) and a hash of its content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ItemDigest {
    pub tokens: u32,
    pub hash: u64,
}

impl ItemDigest {
    pub fn of_text(s: &str) -> Self {
        let mut acc = TextAcc::default();
        acc.push(s);
        acc.finish()
    }
}

/// A whole prompt: prompt_tokens = 3 + Σ over messages (3 + its tokens), OpenAI's chat framing.
#[derive(Clone, Copy, Debug, Default)]
pub struct PromptDigest {
    content_tokens: u32,
    messages: u32,
    hash: u64,
}

impl PromptDigest {
    pub fn add(&mut self, item: ItemDigest) {
        self.content_tokens = self.content_tokens.saturating_add(item.tokens);
        self.messages = self.messages.saturating_add(1);
        self.hash = mix(self.hash ^ item.hash);
    }

    /// Appends another prompt's messages (e.g. Responses `input` after `instructions`).
    pub fn merge(&mut self, other: &PromptDigest) {
        self.content_tokens = self.content_tokens.saturating_add(other.content_tokens);
        self.messages = self.messages.saturating_add(other.messages);
        self.hash = mix(self.hash ^ other.hash);
    }

    /// The text alone, as legacy completions and embeddings count it (no chat framing).
    pub fn content_tokens(&self) -> u32 {
        self.content_tokens
    }

    pub fn messages(&self) -> u32 {
        self.messages
    }

    pub fn prompt_tokens(&self) -> u32 {
        self.messages
            .saturating_mul(TOKENS_PER_MESSAGE)
            .saturating_add(self.content_tokens)
            .saturating_add(TOKENS_PER_PROMPT)
    }

    /// The content seed: the same (model, prompt) always yields the same completion.
    pub fn seed(&self, model: &str) -> u64 {
        mix(self.hash ^ hash_str(model).rotate_left(17))
    }
}

#[derive(Default)]
struct TextAcc {
    tokens: u32,
    hash: Fnv,
}

impl TextAcc {
    /// Content: counted and part of the completion's seed.
    fn push(&mut self, s: &str) {
        self.count(s);
        self.hash.write(s.as_bytes());
    }

    /// A role or a name: counted as OpenAI does, but not content.
    fn count(&mut self, s: &str) {
        self.tokens = self.tokens.saturating_add(text_tokens(s));
    }

    fn finish(self) -> ItemDigest {
        ItemDigest {
            tokens: self.tokens,
            hash: self.hash.finish(),
        }
    }
}

/// Keys we read inside message objects and content parts; everything else is skipped.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Content,
    Output,
    Text,
    Role,
    Name,
    #[serde(other)]
    Other,
}

/// One element of a prompt array.
enum Elem {
    Item(ItemDigest),
    TokenId(u32),
}

impl<'de> Deserialize<'de> for Elem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Elem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message object, a string, a token id or an array of token ids")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Elem, E> {
                Ok(Elem::Item(ItemDigest::of_text(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Elem, E> {
                u32::try_from(v)
                    .map(Elem::TokenId)
                    .map_err(|_| E::custom("token id out of range"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Elem, E> {
                u32::try_from(v)
                    .map(Elem::TokenId)
                    .map_err(|_| E::custom("token id out of range"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Elem, E> {
                Ok(Elem::Item(ItemDigest::default()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Elem, A::Error> {
                let mut ids = TokenRun::default();
                while let Some(id) = seq.next_element::<u32>()? {
                    ids.push(id);
                }
                Ok(Elem::Item(ids.finish()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Elem, A::Error> {
                let mut acc = TextAcc::default();
                while let Some(key) = map.next_key::<Field>()? {
                    match key {
                        Field::Content | Field::Output => {
                            map.next_value_seed(ContentSeed(&mut acc))?
                        }
                        Field::Role | Field::Name => {
                            // `null` (sent by some clients) counts nothing.
                            if let Some(s) =
                                map.next_value::<Option<TextOrOther>>()?.and_then(|t| t.0)
                            {
                                acc.count(&s.0);
                                if matches!(key, Field::Name) {
                                    acc.tokens = acc.tokens.saturating_add(TOKENS_PER_NAME);
                                }
                            }
                        }
                        Field::Text | Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Elem::Item(acc.finish()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Default)]
struct TokenRun {
    count: u32,
    hash: Fnv,
}

impl TokenRun {
    fn push(&mut self, id: u32) {
        self.count = self.count.saturating_add(1);
        self.hash.write(&id.to_le_bytes());
    }

    fn finish(self) -> ItemDigest {
        ItemDigest {
            tokens: self.count,
            hash: self.hash.finish(),
        }
    }
}

/// A message's `content`: a string, null, or an array of parts whose `text` fields count.
struct ContentSeed<'a>(&'a mut TextAcc);

impl<'de> DeserializeSeed<'de> for ContentSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ContentSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or an array of content parts")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push(v);
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(PartSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// One content part (`{"type":"text","text":"…"}`, `input_text`, `output_text`, …).
struct PartSeed<'a>(&'a mut TextAcc);

impl<'de> DeserializeSeed<'de> for PartSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PartSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a content part object")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push(v);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Text => {
                    // A non-string `text` (never sent by the SDKs) is simply not counted.
                    if let Some(s) = map.next_value::<Option<TextOrOther>>()?.and_then(|t| t.0) {
                        self.0.push(&s.0);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A value that is kept when it is a string and skipped otherwise.
struct TextOrOther<'a>(Option<JsonStr<'a>>);

impl<'de> Deserialize<'de> for TextOrOther<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TextOrOther<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(TextOrOther(Some(JsonStr(Cow::Borrowed(v)))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TextOrOther(Some(JsonStr(Cow::Owned(v.to_owned())))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(TextOrOther(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(TextOrOther(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(TextOrOther(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(TextOrOther(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TextOrOther(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(TextOrOther(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Walks a prompt array, joining a run of bare token ids (`[1, 2, 3]`) into one item.
fn walk_items<'de, A: SeqAccess<'de>>(
    mut seq: A,
    mut sink: impl FnMut(ItemDigest),
    ids_allowed: bool,
) -> Result<(), A::Error> {
    let mut run: Option<TokenRun> = None;
    while let Some(elem) = seq.next_element::<Elem>()? {
        match elem {
            Elem::Item(item) => sink(item),
            Elem::TokenId(_) if !ids_allowed => {
                return Err(de::Error::custom(
                    "expected a message object, found a number",
                ));
            }
            Elem::TokenId(id) => run.get_or_insert_with(TokenRun::default).push(id),
        }
    }
    if let Some(run) = run {
        sink(run.finish());
    }
    Ok(())
}

/// Chat `messages`: an array of message objects.
pub struct ChatMessages(pub PromptDigest);

impl<'de> Deserialize<'de> for ChatMessages {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ChatMessages;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ChatMessages, A::Error> {
                let mut digest = PromptDigest::default();
                walk_items(seq, |item| digest.add(item), false)?;
                Ok(ChatMessages(digest))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Completions `prompt` / Responses `input`: a string, or an array of strings, token ids,
/// arrays of token ids or message items. A bare string counts as one message.
pub struct PromptInput(pub PromptDigest);

impl<'de> Deserialize<'de> for PromptInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PromptInput;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PromptInput, E> {
                let mut digest = PromptDigest::default();
                digest.add(ItemDigest::of_text(v));
                Ok(PromptInput(digest))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<PromptInput, A::Error> {
                let mut digest = PromptDigest::default();
                walk_items(seq, |item| digest.add(item), true)?;
                Ok(PromptInput(digest))
            }
        }
        d.deserialize_any(V)
    }
}

/// Embeddings `input`: one digest per input (string, token-id array), in order.
pub struct EmbeddingInput(pub Vec<ItemDigest>);

impl<'de> Deserialize<'de> for EmbeddingInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EmbeddingInput;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, an array of strings, or token ids")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EmbeddingInput, E> {
                Ok(EmbeddingInput(vec![ItemDigest::of_text(v)]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<EmbeddingInput, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(2048));
                walk_items(seq, |item| items.push(item), true)?;
                Ok(EmbeddingInput(items))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(json: &str) -> PromptDigest {
        serde_json::from_str::<ChatMessages>(json)
            .map(|m| m.0)
            .unwrap()
    }

    #[test]
    fn chat_messages_count_content_and_framing() {
        // +3 per message, +3 per prompt, the role's tokens, a name's tokens + 1.
        let d = chat(r#"[{"role":"user","content":"hello there","name":"x"}]"#);
        let t = text_tokens;
        assert_eq!(
            d.prompt_tokens(),
            3 + (3 + t("user") + t("hello there") + t("x") + 1)
        );
        assert_eq!(d.prompt_tokens(), 11);
        // Text parts are counted one by one, and hash like the joined string.
        let parts = chat(
            r#"[{"role":"user","content":[{"type":"text","text":"hello "},{"type":"text","text":"there"}],"name":"x"}]"#,
        );
        assert_eq!(
            parts.prompt_tokens(),
            3 + (3 + t("user") + t("hello ") + t("there") + t("x") + 1)
        );
        assert_eq!(parts.seed("m"), d.seed("m"));
        assert_ne!(d.seed("m"), d.seed("n"));
        let two = chat(
            r#"[{"role":"system","content":"be brief"},{"role":"assistant","content":null,"tool_calls":[]}]"#,
        );
        assert_eq!(
            two.prompt_tokens(),
            3 + (3 + t("system") + t("be brief")) + (3 + t("assistant"))
        );
    }

    #[test]
    fn null_roles_and_names_count_nothing() {
        let d = chat(r#"[{"role":null,"name":null,"content":"hello there"}]"#);
        assert_eq!(d.prompt_tokens(), 3 + 3 + text_tokens("hello there"));
    }

    #[test]
    fn chat_rejects_non_arrays() {
        assert!(serde_json::from_str::<ChatMessages>(r#""hi""#).is_err());
        assert!(serde_json::from_str::<ChatMessages>(r#"[1,2]"#).is_err());
    }

    #[test]
    fn prompt_shapes() {
        let s = serde_json::from_str::<PromptInput>(r#""abcdefgh""#)
            .unwrap()
            .0;
        assert_eq!(s.prompt_tokens(), 3 + (3 + text_tokens("abcdefgh")));
        assert_eq!(s.content_tokens(), text_tokens("abcdefgh"));
        let ids = serde_json::from_str::<PromptInput>("[1,2,3,4,5]")
            .unwrap()
            .0;
        assert_eq!((ids.messages(), ids.prompt_tokens()), (1, 3 + 5 + 3));
        let items = serde_json::from_str::<PromptInput>(
            r#"[{"type":"message","role":"user","content":[{"type":"input_text","text":"abcd"}]},{"type":"function_call_output","call_id":"c","output":"abcd"}]"#,
        )
        .unwrap()
        .0;
        assert_eq!(
            (items.messages(), items.prompt_tokens()),
            (
                2,
                3 + (3 + text_tokens("user") + text_tokens("abcd")) + (3 + text_tokens("abcd"))
            )
        );
    }

    #[test]
    fn embedding_inputs() {
        let one = serde_json::from_str::<EmbeddingInput>(r#""abcde""#)
            .unwrap()
            .0;
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].tokens, 2);
        let many = serde_json::from_str::<EmbeddingInput>(r#"["a","b\u0020c"]"#)
            .unwrap()
            .0;
        assert_eq!(many.len(), 2);
        assert_eq!(many[1], ItemDigest::of_text("b c"));
        let ids = serde_json::from_str::<EmbeddingInput>("[[1,2],[3]]")
            .unwrap()
            .0;
        assert_eq!(ids.iter().map(|i| i.tokens).collect::<Vec<_>>(), vec![2, 1]);
        let flat = serde_json::from_str::<EmbeddingInput>("[7,8,9]").unwrap().0;
        assert_eq!(flat.len(), 1);
        assert_eq!(flat[0].tokens, 3);
    }
}
