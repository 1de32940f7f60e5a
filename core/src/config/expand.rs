//! `${VAR}` and `${VAR:-default}` in string values, taken from the environment after the
//! YAML is parsed, so a secret containing YAML syntax cannot change the document's shape.
//! `$$` writes a literal `$`.

use yaml_serde::Value;

use super::Problem;

/// Expands every string value in place; returns one problem per unset variable.
pub fn expand_env(value: &mut Value, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    walk(value, &mut String::new(), lookup, &mut problems);
    problems
}

fn walk(
    value: &mut Value,
    path: &mut String,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        Value::String(text) if text.contains('$') => match expand_str(text, lookup) {
            Ok(expanded) => *text = expanded,
            Err(message) => problems.push(Problem::at(path.clone(), message)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, lookup, problems);
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if let Some(key) = key.as_str() {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                walk(item, path, lookup, problems);
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, lookup, problems),
        _ => {}
    }
}

/// Expands one string.
pub fn expand_str(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body) = rest.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed \"${{\" in {text:?}"))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("invalid variable name {name:?} in \"${{{expr}}}\""));
            }
            match (
                lookup(name).filter(|v| !(v.is_empty() && default.is_some())),
                default,
            ) {
                (Some(found), _) => out.push_str(&found),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("s3cr:et #x".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_and_defaults() {
        assert_eq!(
            expand_str("Bearer ${KEY}", &env).unwrap(),
            "Bearer s3cr:et #x"
        );
        assert_eq!(expand_str("${NOPE:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand_str("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand_str("${EMPTY}", &env).unwrap(), "");
        assert_eq!(
            expand_str("cost $$5 and $ alone", &env).unwrap(),
            "cost $5 and $ alone"
        );
        assert!(
            expand_str("${NOPE}", &env)
                .unwrap_err()
                .contains("NOPE is not set")
        );
        assert!(expand_str("${KEY", &env).is_err());
        assert!(expand_str("${BAD-NAME}", &env).is_err());
    }

    #[test]
    fn walks_values_and_names_paths() {
        let mut value: Value =
            yaml_serde::from_str("providers:\n  - api_key: ${KEY}\n  - api_key: ${MISSING}\n")
                .unwrap();
        let problems = expand_env(&mut value, &env);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "providers[1].api_key");
        assert_eq!(
            value["providers"][0]["api_key"].as_str(),
            Some("s3cr:et #x")
        );
    }
}
