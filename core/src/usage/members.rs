//! The top-level members of a JSON object, walked without building them: each value is
//! skipped by its brackets and strings, so reading one member of an answer costs a scan of
//! its bytes, not a parse of the whole document.

/// The walk met something it leaves to a full parser: an escaped key, or bytes that are
/// not one JSON object.
#[derive(Debug, PartialEq, Eq)]
pub struct Unusual;

/// The raw values of the members `usage` and `response` (the Responses API nests usage in
/// it), each the last of its name, as a parser keeping the last duplicate would.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UsageMembers<'a> {
    pub usage: Option<&'a [u8]>,
    pub response: Option<&'a [u8]>,
}

/// Walks the top-level object in `json` for its `usage` and `response` members.
pub fn usage_members(json: &[u8]) -> Result<UsageMembers<'_>, Unusual> {
    let mut found = UsageMembers::default();
    let mut at = skip_ws(json, 0);
    if json.get(at) != Some(&b'{') {
        return Err(Unusual);
    }
    at = skip_ws(json, at + 1);
    if json.get(at) == Some(&b'}') {
        return whole(json, at + 1, found);
    }
    loop {
        if json.get(at) != Some(&b'"') {
            return Err(Unusual);
        }
        let key_end = string_end(json, at)?;
        let key = &json[at + 1..key_end - 1];
        if key.contains(&b'\\') {
            return Err(Unusual);
        }
        at = skip_ws(json, key_end);
        if json.get(at) != Some(&b':') {
            return Err(Unusual);
        }
        at = skip_ws(json, at + 1);
        let value_end = value_end(json, at)?;
        match key {
            b"usage" => found.usage = Some(&json[at..value_end]),
            b"response" => found.response = Some(&json[at..value_end]),
            _ => {}
        }
        at = skip_ws(json, value_end);
        match json.get(at) {
            Some(b',') => at = skip_ws(json, at + 1),
            Some(b'}') => return whole(json, at + 1, found),
            _ => return Err(Unusual),
        }
    }
}

/// Only white space may follow the object.
fn whole<'a>(
    json: &'a [u8],
    at: usize,
    found: UsageMembers<'a>,
) -> Result<UsageMembers<'a>, Unusual> {
    if skip_ws(json, at) == json.len() {
        Ok(found)
    } else {
        Err(Unusual)
    }
}

fn skip_ws(json: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = json.get(at) {
        at += 1;
    }
    at
}

/// `json[at]` opens a string: the index just past its closing quote.
fn string_end(json: &[u8], at: usize) -> Result<usize, Unusual> {
    let mut i = at + 1;
    loop {
        let rest = json.get(i..).ok_or(Unusual)?;
        i += memchr::memchr2(b'"', b'\\', rest).ok_or(Unusual)?;
        if json[i] == b'"' {
            return Ok(i + 1);
        }
        // An escape: the next byte is taken whatever it is (`\"` does not close).
        i += 2;
    }
}

/// The index just past the value that starts at `json[at]`.
fn value_end(json: &[u8], at: usize) -> Result<usize, Unusual> {
    match json.get(at).ok_or(Unusual)? {
        b'"' => string_end(json, at),
        b'{' | b'[' => {
            let (mut depth, mut i) = (0usize, at);
            loop {
                match json.get(i).ok_or(Unusual)? {
                    b'"' => {
                        i = string_end(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        // A number, `true`, `false` or `null`: up to the next delimiter.
        _ => {
            let len = json[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(json.len() - at);
            Ok(at + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_top_level_members_past_strings_and_nesting() {
        let doc = br#" {"id":"x","choices":[{"message":{"content":"a \"usage\": {} ]}\\"}}],
            "usage" : {"prompt_tokens":3} , "n":-1.5e3,"ok":true,"response":null } "#;
        let found = usage_members(doc).unwrap();
        assert_eq!(found.usage, Some(&br#"{"prompt_tokens":3}"#[..]));
        assert_eq!(found.response, Some(&b"null"[..]));
    }

    #[test]
    fn the_last_duplicate_wins() {
        let found = usage_members(br#"{"usage":1,"usage":{"a":2}}"#).unwrap();
        assert_eq!(found.usage, Some(&br#"{"a":2}"#[..]));
    }

    #[test]
    fn leaves_what_it_does_not_take_on_to_a_parser() {
        for doc in [
            &br#"{"\u0075sage":{}}"#[..],
            b"",
            b"[]",
            br#"{"a":1"#,
            br#"{"a":"open"#,
            br#"{"a":"esc\"#,
            br#"{"a":{"b":1}"#,
            br#"{"a" 1}"#,
            br#"{"a":1 "b":2}"#,
            br#"{"a":1} x"#,
            br#"{a:1}"#,
        ] {
            assert_eq!(usage_members(doc), Err(Unusual), "{}", doc.escape_ascii());
        }
        assert_eq!(usage_members(b" {} "), Ok(UsageMembers::default()));
    }
}
